"""Per-step telemetry: buffered CSV rows (and TensorBoard scalars when it is installed).

Rows are plain Python values collected from numbers the step already brought to the host, so
logging adds no device sync. The buffer is flushed every ``log_every`` steps and before every
checkpoint; on resume, rows newer than the checkpoint are dropped so the file never holds a step
twice.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sepkit.utils.io import atomic_write_text

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
        new_file = not self.path.exists() or self.path.stat().st_size == 0
        with self.path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns, extrasaction="ignore")
            if new_file:
                writer.writeheader()
            writer.writerows(self.buffer)
        self.buffer.clear()

    def truncate_after(self, step: int) -> None:
        """Drop rows with ``step`` greater than the resumed step (written after the checkpoint)."""
        self.buffer.clear()
        if not self.path.exists():
            return
        with self.path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        kept = [r for r in rows if _as_int(r.get("step")) <= step]
        if len(kept) == len(rows):
            return
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


class Telemetry:
    """Training and validation logs of one run (a no-op object on non-zero ranks)."""

    def __init__(self, run_dir: Path | None, log_every: int = 50, enabled: bool = True) -> None:
        self.enabled = enabled and run_dir is not None
        self.log_every = max(1, log_every)
        self.steps: CsvLog | None = None
        self.valid: CsvLog | None = None
        self.tb: Any = None
        if not self.enabled or run_dir is None:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        self.steps = CsvLog(run_dir / "metrics.csv", STEP_COLUMNS)
        self.valid = CsvLog(run_dir / "valid.csv", VALID_COLUMNS)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tensorboard"))
        except Exception:  # tensorboard not installed: CSV only
            self.tb = None

    def step(self, row: dict[str, Any]) -> None:
        if self.steps is None:
            return
        self.steps.append(row)
        if self.tb is not None:
            step = row["step"]
            self.tb.add_scalar("train/loss", row["loss"], step)
            if row.get("grad_norm") not in (None, ""):
                self.tb.add_scalar("train/grad_norm", row["grad_norm"], step)
            self.tb.add_scalar("train/skipped", int(row["skipped"]), step)
            self.tb.add_scalar("train/kept_fraction", row["kept"] / max(1, row["total"]), step)
        if len(self.steps.buffer) >= self.log_every:
            self.flush()

    def validation(self, row: dict[str, Any]) -> None:
        if self.valid is None:
            return
        self.valid.append(row)
        self.valid.flush()
        if self.tb is not None:
            self.tb.add_scalar("valid/loss", row["valid_loss"], row["step"])
            self.tb.add_scalar("train/lr", row["lr"], row["step"])

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
