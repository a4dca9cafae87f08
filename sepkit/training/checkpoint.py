"""Checkpoints: atomic writes, best-N by validation loss plus the latest, automatic resume.

Files live in ``RUN_DIR/checkpoints/`` as ``ckpt-<step>.pt``; ``index.json`` records each file's step
and validation loss and which is best; ``best.pt`` is a hard link (or copy) of the best one, so
``sepkit evaluate`` and ``sepkit separate`` find it without reading the index.

Every file is written to a temporary sibling, fsynced and renamed, so a crash at any instant leaves
the previous checkpoint intact and loadable. If the newest file is unreadable anyway (a disk fault,
a copy cut short by hand), resume says so, moves it aside as ``*.corrupt`` (never deletes it) and
falls back to the next one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sepkit.models.io import ModelFileError, read_payload
from sepkit.utils.io import atomic_open, atomic_write_text, fsync_dir

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "sepkit-checkpoint"
CHECKPOINT_VERSION = 1
_NAME = re.compile(r"^ckpt-(\d+)\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not fit the model/optimiser it is loaded into."""


@dataclass
class CheckpointInfo:
    path: Path
    step: int
    valid_loss: float | None


class CheckpointManager:
    def __init__(self, directory: Path, keep_best: int = 2) -> None:
        self.directory = Path(directory)
        self.keep_best = keep_best

    # ---- listing -------------------------------------------------------------------------------
    def _index_path(self) -> Path:
        return self.directory / "index.json"

    def _read_index(self) -> dict[str, float | None]:
        try:
            data = json.loads(self._index_path().read_text())
            return {str(k): v for k, v in data.get("valid_loss", {}).items()}
        except (OSError, ValueError):
            return {}

    def list(self) -> list[CheckpointInfo]:
        """Checkpoints on disk, oldest first (by step)."""
        if not self.directory.is_dir():
            return []
        losses = self._read_index()
        found = []
        for path in self.directory.iterdir():
            match = _NAME.match(path.name)
            if match:
                found.append(CheckpointInfo(path, int(match.group(1)), losses.get(path.name)))
        return sorted(found, key=lambda c: c.step)

    def best(self) -> CheckpointInfo | None:
        scored = [(c.valid_loss, -c.step, c) for c in self.list() if c.valid_loss is not None]
        return min(scored, key=lambda t: (t[0], t[1]))[2] if scored else None

    # ---- writing -------------------------------------------------------------------------------
    def save(self, state: dict[str, Any], step: int, valid_loss: float | None) -> Path:
        """Write ``ckpt-<step>.pt`` atomically, update the index and ``best.pt``, prune old files."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"ckpt-{step:09d}.pt"
        payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}
        with atomic_open(path, "wb") as handle:
            torch.save(payload, handle)
        losses = self._read_index()
        losses[path.name] = valid_loss
        self._write_index(losses)
        self._prune()
        self._link_best()
        return path

    def _write_index(self, losses: dict[str, float | None]) -> None:
        present = {c.path.name for c in self.list()}
        losses = {k: v for k, v in losses.items() if k in present}
        best = min(((v, k) for k, v in losses.items() if v is not None), default=(None, None))
        atomic_write_text(
            self._index_path(),
            json.dumps({"valid_loss": losses, "best": best[1]}, indent=1, sort_keys=True),
        )

    def _prune(self) -> None:
        ckpts = self.list()
        if not ckpts:
            return
        keep = {ckpts[-1].path}
        scored = sorted((c.valid_loss, c.path) for c in ckpts if c.valid_loss is not None)
        keep.update(path for _, path in scored[: self.keep_best])
        removed = False
        for c in ckpts:
            if c.path not in keep:
                with contextlib.suppress(FileNotFoundError):
                    c.path.unlink()
                removed = True
        if removed:
            fsync_dir(self.directory)
            self._write_index(self._read_index())

    def _link_best(self) -> None:
        best = self.best()
        if best is None:
            return
        target = self.directory / "best.pt"
        tmp = self.directory / ".best.pt.tmp"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        try:
            os.link(best.path, tmp)
        except OSError:  # file systems without hard links
            shutil.copyfile(best.path, tmp)
        os.replace(tmp, target)
        fsync_dir(self.directory)

    # ---- reading -------------------------------------------------------------------------------
    def latest_loadable(self) -> tuple[Path, dict[str, Any]] | None:
        """The newest checkpoint that loads; unreadable newer ones are moved aside with a warning."""
        for info in reversed(self.list()):
            try:
                return info.path, load_checkpoint(info.path)
            except CheckpointError as err:
                aside = info.path.with_suffix(".pt.corrupt")
                log.warning("%s; moved to %s and trying the previous checkpoint", err, aside.name)
                os.replace(info.path, aside)
        return None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint; every failure becomes a :class:`CheckpointError` naming the file."""
    try:
        payload = read_payload(path)
    except ModelFileError as err:
        raise CheckpointError(str(err)) from err
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path}: a model file, not a training checkpoint (no optimiser state); use it with "
            "init_from=... to start a new run from its weights"
        )
    if payload.get("version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path}: written by a newer sepkit (checkpoint version {payload.get('version')})"
        )
    return payload
