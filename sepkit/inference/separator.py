"""The high-level API: ``Separator.from_pretrained(run_or_file).separate_files(...)``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from sepkit.evaluation.shift_ensemble import ShiftEnsemble
from sepkit.inference.common import (
    DEFAULT_CHUNK_SECONDS,
    DEFAULT_OVERLAP_SECONDS,
    InputError,
)
from sepkit.inference.files import separate_files
from sepkit.inference.loading import load_model_for_separation
from sepkit.inference.realtime import Engine, LiveSeparator
from sepkit.inference.streaming import separate_waveform
from sepkit.utils.device import resolve_device


class Separator:
    """The Python API: ``Separator.from_pretrained("runs/x").separate(wav, sr) -> [C, T]``."""

    def __init__(
        self,
        model: nn.Module,
        sample_rate: int,
        *,
        chunk_seconds: float | None = DEFAULT_CHUNK_SECONDS,
        overlap_seconds: float = DEFAULT_OVERLAP_SECONDS,
        device: str | torch.device = "cpu",
        shifts: int = 1,
    ) -> None:
        self.device = resolve_device(device) if isinstance(device, str) else device
        model = model.to(self.device).eval()
        self.base_model = model
        # shifts > 1: average over sub-frame delays of the input (evaluation/shift_ensemble.py)
        self.model = ShiftEnsemble(model, shifts) if shifts > 1 else model
        self.sample_rate = int(sample_rate)
        self.chunk_seconds = chunk_seconds
        self.overlap_seconds = overlap_seconds

    @classmethod
    def from_pretrained(
        cls, source: str | Path, *, shifts: int | None = None, **kwargs: Any
    ) -> Separator:
        """Load from a run directory, a training checkpoint or a model file. ``shifts=None``
        uses the run's ``train.test_shifts``, so separating a file matches the run's test
        results."""
        model, rate, _, run_shifts = load_model_for_separation(source)
        return cls(model, rate, shifts=run_shifts if shifts is None else shifts, **kwargs)

    def separate(self, waveform: Tensor | np.ndarray, sr: int | None = None) -> Tensor:
        """``waveform [T]`` or ``[channels, T]`` at ``sr`` (default: the model's rate) ->
        estimated sources ``[C, T]`` at ``sr``."""
        return separate_waveform(
            self.model,
            waveform,
            sr or self.sample_rate,
            self.sample_rate,
            self.chunk_seconds,
            self.overlap_seconds,
            self.device,
        )

    def stream(self, sample_rate: int | None = None, engine: Engine = "torch") -> LiveSeparator:
        """A live separator for a causal model: ``push(block)`` blocks of any size, get the
        finished output back (``[C, n]``), ``finish()`` at the end. One pass, whatever
        ``shifts`` says (a shift ensemble would add its shifts to the latency). ``sample_rate``:
        the rate the blocks come at, which must be the model's. ``engine``: ``torch`` or
        ``onnxruntime`` (the exported stream: the one that meets real time with short blocks)."""
        if sample_rate is not None and int(sample_rate) != self.sample_rate:
            raise InputError(
                f"sample-rate mismatch: streaming at {sample_rate} Hz, but the model runs at "
                f"{self.sample_rate} Hz; resample the input to {self.sample_rate} Hz first"
            )
        return LiveSeparator(self.base_model, self.sample_rate, self.device, engine)

    def separate_files(self, inputs: Sequence[str | Path], out_dir: str | Path) -> list[list[Path]]:
        return separate_files(
            self.model,
            [Path(p) for p in inputs],
            Path(out_dir),
            self.sample_rate,
            self.chunk_seconds,
            self.overlap_seconds,
            self.device,
        )
