"""Per-step telemetry: buffered CSV rows (and TensorBoard scalars when it is installed).

Rows are plain Python values collected from numbers the step already brought to the host, so
logging adds no device sync. The buffer is flushed every ``log_every`` steps and before every
checkpoint; on resume, rows newer than the checkpoint are dropped so the file never holds a step
twice, and so is a last row cut short by a crash or a full disk in the middle of an append (new
rows would otherwise be glued onto it). A failed append raises a
:class:`~sepkit.utils.io.WriteError` naming the file: training stops rather than run on unlogged.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sepkit.utils.io import WriteError, atomic_write_text, disk_fix_hint

log = logging.getLogger(__name__)

STEP_COLUMNS = (
    "step",
    "epoch",
    "batch",
    "loss",
    "kept",
    "total",
    "filtered",
    "nonfinite",
    "grad_norm",
    "clipped",
    "skipped",
    "reason",
    "lr",
    "loss_scale",
    "skipped_ids",
    "seconds",
)
VALID_COLUMNS = ("epoch", "step", "valid_loss", "valid_si_snr", "lr")


class CsvLog:
    """An append-only CSV with a fixed header, written in batches."""

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.path = path
        self.columns = tuple(columns)
        self.buffer: list[dict[str, Any]] = []

    def append(self, row: dict[str, Any]) -> None:
        self.buffer.append(row)

    def flush(self) -> None:
        if not self.buffer:
            return
        try:
            new_file = not self.path.exists() or self.path.stat().st_size == 0
            with self.path.open("a", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=self.columns, extrasaction="ignore")
                if new_file:
                    writer.writeheader()
                writer.writerows(self.buffer)
        except OSError as err:
            resume = (
                "; re-running the same command resumes from the newest checkpoint left, if any"
                if err.errno == errno.ENOENT  # the checkpoints may have gone with the directory
                else ", then re-run the same command to resume from the last checkpoint"
            )
            hint = disk_fix_hint(err.errno, self.path.parent)
            detail = f": cannot append to {self.path.name}; {hint}{resume}"
            raise WriteError(err.errno, f"{err.strerror or err}{detail}", str(self.path)) from err
        self.buffer.clear()

    def truncate_after(self, step: int) -> None:
        """Drop rows with ``step`` greater than the resumed step (written after the checkpoint),
        and a last row without its line end (an append cut short)."""
        self.buffer.clear()
        try:
            with self.path.open(newline="") as handle:
                text = handle.read()
        except FileNotFoundError:
            return
        complete = text[: text.rfind("\n") + 1]  # "" when not even the header is whole
        rows = list(csv.DictReader(io.StringIO(complete, newline="")))
        kept = [r for r in rows if _as_int(r.get("step")) <= step]
        if len(kept) == len(rows) and complete == text:
            return
        if complete != text:
            log.warning("%s: dropped a row cut short by an interrupted write", self.path.name)
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=self.columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(kept)
        atomic_write_text(self.path, out.getvalue())


def _as_int(value: str | None) -> int:
    try:
        return int(float(value or 0))
    except ValueError:
        return 0


class TensorBoardLog:
    """TensorBoard scalars: an optional extra that must neither stop a run nor spray tracebacks.

    The writer works in a background thread; when the disk fills up, that thread dies printing a
    traceback and the next call in the main thread re-raises its error, without a file name. Here
    the first failure turns TensorBoard off with one warning. ``metrics.csv``, on the same disk, is
    the log that matters: its next write fails with an error naming it, and the run stops.

    The writer (its thread and its event file) is created with the first scalar, so a trainer
    that only evaluates leaves no empty event file in the run directory.
    """

    def __init__(self, folder: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter  # ImportError: not installed

        self.folder = folder
        self._new_writer: Callable[[], Any] = lambda: SummaryWriter(str(folder))
        self.writer: Any = None
        self.closed = False  # by close() or by a failure: stays off
        _quiet_tensorboard_thread_errors()

    def scalars(self, values: dict[str, float], step: int) -> None:
        def write() -> None:
            if self.writer is None:
                self.writer = self._new_writer()
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)

        self._call(write)

    def flush(self) -> None:
        if self.writer is not None:
            self._call(lambda: self.writer.flush())

    def close(self) -> None:
        if self.writer is not None:
            self._call(lambda: self.writer.close())
        self.writer = None
        self.closed = True

    def _call(self, action: Callable[[], None]) -> None:
        if self.closed:
            return
        try:
            action()
        except Exception as err:
            log.warning("TensorBoard logging in %s stopped: %s", self.folder, err)
            writer, self.writer = self.writer, None
            self.closed = True
            if writer is not None:
                with contextlib.suppress(Exception):
                    writer.close()


def _quiet_tensorboard_thread_errors() -> None:
    """Let a dying TensorBoard writer thread exit without a traceback on stderr: its OSError is
    re-raised in the main thread, where :class:`TensorBoardLog` reports it in one line."""
    previous = threading.excepthook
    if getattr(previous, "sepkit_quiets_tensorboard", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        from_tensorboard = type(args.thread).__module__.startswith("tensorboard.")
        if not (from_tensorboard and isinstance(args.exc_value, OSError)):
            previous(args)

    hook.sepkit_quiets_tensorboard = True  # type: ignore[attr-defined]
    threading.excepthook = hook


class Telemetry:
    """Training and validation logs of one run (a no-op object on non-zero ranks)."""

    def __init__(self, run_dir: Path | None, log_every: int = 50, enabled: bool = True) -> None:
        self.enabled = enabled and run_dir is not None
        self.log_every = max(1, log_every)
        self.steps: CsvLog | None = None
        self.valid: CsvLog | None = None
        self.tb: TensorBoardLog | None = None
        if not self.enabled or run_dir is None:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        self.steps = CsvLog(run_dir / "metrics.csv", STEP_COLUMNS)
        self.valid = CsvLog(run_dir / "valid.csv", VALID_COLUMNS)
        try:
            self.tb = TensorBoardLog(run_dir / "tensorboard")
        except Exception:  # tensorboard not installed (or its folder not writable): CSV only
            self.tb = None

    def step(self, row: dict[str, Any]) -> None:
        if self.steps is None:
            return
        self.steps.append(row)
        if self.tb is not None:
            values = {"train/loss": row["loss"], "train/skipped": int(row["skipped"])}
            if row.get("grad_norm") not in (None, ""):
                values["train/grad_norm"] = row["grad_norm"]
            values["train/kept_fraction"] = row["kept"] / max(1, row["total"])
            self.tb.scalars(values, row["step"])
        if len(self.steps.buffer) >= self.log_every:
            self.flush()

    def validation(self, row: dict[str, Any]) -> None:
        if self.valid is None:
            return
        self.valid.append(row)
        self.valid.flush()
        if self.tb is not None:
            self.tb.scalars({"valid/loss": row["valid_loss"], "train/lr": row["lr"]}, row["step"])

    def flush(self) -> None:
        if self.steps is not None:
            self.steps.flush()
        if self.tb is not None:
            self.tb.flush()

    def truncate_after(self, step: int) -> None:
        for log_file in (self.steps, self.valid):
            if log_file is not None:
                log_file.truncate_after(step)

    def close(self) -> None:
        self.flush()
        if self.tb is not None:
            self.tb.close()
