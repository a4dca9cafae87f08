"""Checkpoints: atomic writes, best-N by validation loss plus the latest, automatic resume.

Files live in ``RUN_DIR/checkpoints/`` as ``ckpt-<step>.pt``; ``index.json`` records each file's step
and validation loss and which is best; ``best.pt`` is a hard link (or copy) of the best one, so
``sepkit evaluate`` and ``sepkit separate`` find it without reading the index. With
``train.average_best`` = K > 1, ``averaged.pt`` is a model file holding the mean of the K best
checkpoints' weights, which evaluation and separation then use (see :func:`average_states`).

Every file is written to a temporary sibling, fsynced and renamed, so a crash at any instant leaves
the previous checkpoint intact and loadable. If the newest file is unreadable anyway (a disk fault,
a copy cut short by hand), resume says so, moves it aside as ``*.corrupt`` (never deletes it) and
falls back to the next one.

The checkpoint files are the truth and ``index.json`` / ``best.pt`` / ``averaged.pt`` are derived
from them: each file
carries its own validation loss, so a crash between writing a file and updating the index (or a
disk that filled up in between) is repaired on resume by :meth:`CheckpointManager.recover`, which
also deletes the temporary files of writes cut short. A write that fails (disk full, read-only
file system) raises a :class:`~sepkit.utils.io.WriteError` that says which checkpoint is still
intact and how to continue.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NoReturn

import torch

from sepkit.models.io import MODEL_FILE_FORMAT, ModelFileError, read_payload
from sepkit.utils.io import (
    WriteError,
    atomic_open,
    atomic_write_text,
    atomic_write_with,
    disk_fix_hint,
    fsync_dir,
    os_error_in,
    remove_stale_temp_files,
)

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "sepkit-checkpoint"
CHECKPOINT_VERSION = 1
_NAME = re.compile(r"^ckpt-(\d+)\.pt$")
_BEST_TMP = ".best.pt.tmp"
#: Model file with the mean weights of the ``average_best`` best checkpoints.
AVERAGED = "averaged.pt"


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not fit the model/optimiser it is loaded into."""


@dataclass
class CheckpointInfo:
    path: Path
    step: int
    valid_loss: float | None


def average_states(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of several state dicts of one model (floating tensors, in float64,
    then back to their dtype); other entries (integer counters) are taken from the first.

    Why: checkpoint averaging (ESPnet averages the N best by validation loss, fairseq the last N)
    often beats the single best checkpoint once the learning rate has come down, when the best
    checkpoints sit around one minimum. It is no free gain while the rate is still high (on the
    demo it went both ways, docs/demo.md), so it is off by default (``train.average_best`` = 1).
    """
    first = states[0]
    for other in states[1:]:
        if other.keys() != first.keys():
            raise CheckpointError("cannot average checkpoints of different models (keys differ)")
    out: dict[str, torch.Tensor] = {}
    for key, value in first.items():
        if value.is_floating_point():
            total = torch.stack([s[key].to(torch.float64) for s in states]).mean(dim=0)
            out[key] = total.to(value.dtype)
        else:
            out[key] = value.clone()
    return out


class CheckpointManager:
    def __init__(self, directory: Path, keep_best: int = 2, average_best: int = 1) -> None:
        self.directory = Path(directory)
        self.average_best = average_best
        # The checkpoints to average must survive pruning.
        self.keep_best = max(keep_best, average_best)

    # ---- listing -------------------------------------------------------------------------------
    def _index_path(self) -> Path:
        return self.directory / "index.json"

    def _read_index(self) -> dict[str, float | None]:
        try:
            data = json.loads(self._index_path().read_text())
            return {str(k): v for k, v in data.get("valid_loss", {}).items()}
        except (OSError, ValueError, AttributeError):
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
        ranked = self.ranked()
        return ranked[0] if ranked else None

    def ranked(self) -> builtins.list[CheckpointInfo]:
        """Validated checkpoints, best first (lowest validation loss; ties: the later one)."""
        scored = [c for c in self.list() if c.valid_loss is not None]
        return sorted(scored, key=lambda c: (c.valid_loss, -c.step))

    # ---- writing -------------------------------------------------------------------------------
    def save(self, state: dict[str, Any], step: int, valid_loss: float | None) -> Path:
        """Write ``ckpt-<step>.pt`` atomically, update the index and ``best.pt``, prune old files.

        Raises :class:`~sepkit.utils.io.WriteError` when the disk refuses a write; the message
        names the checkpoint that is still intact, which re-running the same command resumes from.
        """
        path = self.directory / f"ckpt-{step:09d}.pt"
        payload = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "valid_loss": valid_loss,  # the index can be rebuilt from the files alone
            **state,
        }
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with atomic_open(path, "wb") as handle:
                torch.save(payload, handle)
        except Exception as err:
            cause = os_error_in(err)
            _raise_write_failed(err, path, self._not_written(path, cause.errno if cause else None))
        try:
            losses = self._read_index()
            losses[path.name] = valid_loss
            self._write_index(losses)
            self._prune()
            self._link_best()
            self._refresh_average()
        except Exception as err:
            detail = (
                f"{path.name} was written and is intact, but index.json/best.pt/averaged.pt could "
                "not be updated; re-run the same command to resume from it (they are rebuilt)"
            )
            _raise_write_failed(err, self._index_path(), detail)
        return path

    def _not_written(self, path: Path, errno: int | None) -> str:
        previous = [c for c in self.list() if c.path != path]
        if not previous:
            return (
                "checkpoint not written and none was written before: fix the disk, then "
                "re-running the same command starts from step 0"
            )
        return (
            f"checkpoint not written; the last good one, {previous[-1].path.name} (step "
            f"{previous[-1].step}), is intact: {disk_fix_hint(errno, self.directory)}, "
            "then re-run the same command to resume from it"
        )

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
        """Point ``best.pt`` at the best checkpoint (a hard link; a copy where links fail)."""
        best = self.best()
        if best is None:
            return
        target = self.directory / "best.pt"
        with contextlib.suppress(OSError):
            if os.path.samefile(best.path, target):
                return  # already right; renaming a link over itself would leave the temp behind
        tmp = self.directory / _BEST_TMP
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        try:
            os.link(best.path, tmp)
        except OSError:  # file systems without hard links
            atomic_write_with(target, lambda handle: _copy_into(best.path, handle))
            return
        os.replace(tmp, target)
        fsync_dir(self.directory)

    def _refresh_average(self) -> None:
        """Rewrite ``averaged.pt`` when the set of the ``average_best`` best checkpoints changed.

        With fewer than two validated checkpoints there is nothing to average and no file (a
        stale one is removed), so evaluation falls back to ``best.pt``.
        """
        target = self.directory / AVERAGED
        sources = self.ranked()[: self.average_best] if self.average_best > 1 else []
        if len(sources) < 2:
            if target.exists():
                target.unlink()
                fsync_dir(self.directory)
            return
        names = [c.path.name for c in sources]
        with contextlib.suppress(ModelFileError):
            if read_payload(target).get("averaged_from") == names:
                return
        payloads = [load_checkpoint(c.path) for c in sources]
        best = payloads[0]
        payload = {
            "format": MODEL_FILE_FORMAT,
            "version": 1,
            "model_spec": best["model_spec"],
            "model_state": average_states([p["model_state"] for p in payloads]),
            "config": best.get("config"),
            "sample_rate": best.get("sample_rate"),
            "averaged_from": names,
            "valid_losses": [c.valid_loss for c in sources],
        }
        with atomic_open(target, "wb") as handle:
            torch.save(payload, handle)
        log.info("averaged.pt: mean weights of %s", ", ".join(names))

    # ---- recovery ------------------------------------------------------------------------------
    def recover(self, loaded: dict[str, dict[str, Any]] | None = None) -> None:
        """Undo what a crash can leave: temp files of interrupted writes, an index that misses
        the newest checkpoint, ``best.pt`` pointing at a file that is no longer the best.

        ``loaded`` maps file names to payloads already in memory (no second read). Only the
        training process that owns the directory may call it (a live writer's temp file would
        look stale).
        """
        self._remove_temp_files()
        losses = self._read_index()
        present = {c.path.name: c for c in self.list()}
        missing = [name for name in present if name not in losses]
        for name in missing:
            payload = (loaded or {}).get(name)
            if payload is None:
                try:
                    payload = load_checkpoint(present[name].path)
                except CheckpointError:
                    continue  # latest_loadable moves it aside if it is ever the newest
            losses[name] = payload.get("valid_loss")
        if missing or set(losses) - set(present):
            log.warning("checkpoint index out of date (interrupted write); rebuilt from the files")
            self._write_index(losses)
        self._link_best()
        self._refresh_average()

    def _remove_temp_files(self) -> None:
        removed, failed = remove_stale_temp_files(self.directory)
        best_tmp = self.directory / _BEST_TMP
        if best_tmp.exists():
            try:
                best_tmp.unlink()
                removed.append(best_tmp)
            except OSError as err:
                failed.append(f"{best_tmp}: {err.strerror or err}")
        if removed:
            names = ", ".join(p.name for p in removed)
            log.info("removed %d temporary file(s) of interrupted writes: %s", len(removed), names)
        for message in failed:
            log.warning("cannot remove the temporary file of an interrupted write: %s", message)

    # ---- reading -------------------------------------------------------------------------------
    def latest_loadable(self) -> tuple[Path, dict[str, Any]] | None:
        """The newest checkpoint that loads; unreadable newer ones are moved aside with a warning.

        Repairs the directory first (:meth:`recover`), so it is meant for the process that is
        about to resume training in it.
        """
        found = None
        for info in reversed(self.list()):
            try:
                found = info.path, load_checkpoint(info.path)
                break
            except CheckpointError as err:
                aside = info.path.with_suffix(".pt.corrupt")
                log.warning("%s; moved to %s and trying the previous checkpoint", err, aside.name)
                os.replace(info.path, aside)
        try:
            self.recover({found[0].name: found[1]} if found else None)
        except Exception as err:
            detail = "cannot repair the checkpoint directory after an interrupted run"
            _raise_write_failed(err, self.directory, detail)
        return found


def _raise_write_failed(err: Exception, target: Path, detail: str) -> NoReturn:
    """Re-raise ``err``; as a WriteError about ``target`` saying what was kept when the disk
    (not a bug) caused it."""
    cause = os_error_in(err)
    if cause is None:
        raise err
    raise WriteError(cause.errno, f"{cause.strerror or cause}: {detail}", str(target)) from err


def _copy_into(source: Path, handle: IO[bytes]) -> None:
    with source.open("rb") as src:
        shutil.copyfileobj(src, handle)


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
