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
import os
import socket
import time
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


class EventFile:
    """One TensorBoard event file, written synchronously by the caller's thread.

    Not ``SummaryWriter``: its writes happen in a background thread which, when the disk fills,
    dies printing a traceback, and the main thread sees the error later without a file name.
    Quieting that thread took replacing the process-wide ``threading.excepthook``, which library
    code must not do. Scalars are a few dozen bytes per step: written here, buffered by the file
    and flushed with ``metrics.csv``, they cost nothing a thread would save, and a failure is an
    ``OSError`` raised where it happens.
    """

    def __init__(self, folder: Path) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.summary.writer.record_writer import RecordWriter

        self._event, self._summary = Event, Summary
        folder.mkdir(parents=True, exist_ok=True)
        # TensorBoard's own naming, so its loaders order and pick the files as usual.
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}"
        self.path = folder / f"{name}.0"
        self._records = RecordWriter(self.path.open("wb"))
        self._write(Event(wall_time=time.time(), file_version="brain.Event:2"))

    def scalars(self, values: dict[str, float], step: int) -> None:
        summary = self._summary(
            value=[
                self._summary.Value(tag=tag, simple_value=float(value))
                for tag, value in values.items()
            ]
        )
        self._write(self._event(wall_time=time.time(), step=step, summary=summary))

    def _write(self, event: Any) -> None:
        self._records.write(event.SerializeToString())

    def flush(self) -> None:
        self._records.flush()

    def close(self) -> None:
        self._records.close()


class TensorBoardLog:
    """TensorBoard scalars: an optional extra that must neither stop a run nor spray tracebacks.

    The first failure (a full disk, a folder that cannot be created) turns TensorBoard off with
    one warning naming the folder. ``metrics.csv``, on the same disk, is the log that matters: its
    next write fails with an error naming it, and the run stops.

    The event file is created with the first scalar, so a trainer that only evaluates leaves no
    empty event file in the run directory.
    """

    def __init__(self, folder: Path) -> None:
        # Fails here, once, if tensorboard is missing or broken (see Telemetry).
        import tensorboard.compat.proto.event_pb2  # noqa: F401

        self.folder = folder
        self.writer: EventFile | None = None
        self.closed = False  # by close() or by a failure: stays off

    def scalars(self, values: dict[str, float], step: int) -> None:
        def write() -> None:
            if self.writer is None:
                self.writer = EventFile(self.folder)
            self.writer.scalars(values, step)

        self._call(write)

    def flush(self) -> None:
        if self.writer is not None:
            self._call(self.writer.flush)

    def close(self) -> None:
        if self.writer is not None:
            self._call(self.writer.close)
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


def open_tensorboard(folder: Path) -> TensorBoardLog | None:
    """TensorBoard for a run, or None with one message saying why not: not installed (info),
    or installed but failing to import (a warning with the error, e.g. a protobuf mismatch)."""
    try:
        return TensorBoardLog(folder)
    except ModuleNotFoundError as err:
        if err.name != "tensorboard":
            log.warning("TensorBoard is off: importing it failed (%s); metrics.csv only", err)
        else:
            log.info(
                "TensorBoard is not installed (pip install 'sepkit[tensorboard]'): metrics.csv only"
            )
    except Exception as err:
        log.warning("TensorBoard is off: importing it failed (%s); metrics.csv only", err)
    return None


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
        self.tb = open_tensorboard(run_dir / "tensorboard")

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
