"""Patience for a run that only skips (issue 19.2): stop with a clear error and keep the state.

Before: a run whose every batch was skipped (a wrong sign in ``train.threshold``, an all-NaN
corpus, a diverged model) spent its whole budget with 0 updates and exited 0.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from helpers.tiny_model import TinySeparator

from sepkit.data import Batch
from sepkit.training import TrainConfig
from sepkit.training.checkpoint import CheckpointManager
from sepkit.training.patience import TrainingStalledError
from sepkit.training.trainer import Trainer


def _batches(count: int, nan_at: frozenset[int] = frozenset()) -> list[Batch]:
    out = []
    for b in range(count):
        gen = torch.Generator().manual_seed(b)
        src = torch.randn(2, 2, 1200, generator=gen) * 0.1
        mix = src.sum(1)
        if b in nan_at:
            mix[1, 100] = math.nan  # the second example of the batch is broken
        out.append(Batch(mix, src, [f"b{b}-ex{i}" for i in range(2)]))
    return out


def _trainer(run_dir: Path, **overrides: object) -> Trainer:
    torch.manual_seed(0)
    model = TinySeparator()
    config = TrainConfig(progress_bar=False, epochs=1, checkpoint_every_minutes=None, **overrides)
    return Trainer(model, torch.optim.Adam(model.parameters(), lr=1e-3), config, run_dir=run_dir)


def test_wrong_threshold_sign_stops_with_a_checkpoint_and_says_why(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, threshold=60.0, nonfinite_patience=5)
    with pytest.raises(TrainingStalledError) as caught:
        trainer.fit(_batches(40))
    message = str(caught.value)
    assert "train.nonfinite_patience: 5 training batches in a row were skipped" in message
    assert "all_filtered x5" in message
    assert "train.threshold=60.0" in message and "wrong sign" in message
    assert "step 5: all_filtered: b4-ex0, b4-ex1" in message  # the examples involved
    # stopped at the 5th batch, not after the whole budget, and the state is on disk
    assert trainer.step == 5 and trainer.updates == 0
    found = CheckpointManager(tmp_path / "checkpoints").latest_loadable()
    assert found is not None and str(found[0]) in message
    assert found[1]["trainer"]["step"] == 5


def test_nonfinite_examples_are_named(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, nonfinite_patience=3)
    with pytest.raises(TrainingStalledError, match=r"nonfinite_loss x3") as caught:
        trainer.fit(_batches(20, nan_at=frozenset(range(20))))
    message = str(caught.value)
    assert "step 3: nonfinite_loss: b2-ex1\n" in message + "\n"  # only the broken example
    assert "b2-ex0" not in message
    assert "NaN or inf samples" in message


def test_isolated_skips_never_trip_it(tmp_path: Path) -> None:
    # 2 broken batches in a row, then a good one, over and over: a streak never exceeds 2.
    nan_at = frozenset(b for b in range(30) if b % 3 != 2)
    trainer = _trainer(tmp_path, nonfinite_patience=3)
    summary = trainer.fit(_batches(30, nan_at))
    assert summary["nonfinite_count"] == 20 and summary["updates"] == 10


def test_null_patience_never_stops(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, threshold=60.0, nonfinite_patience=None)
    summary = trainer.fit(_batches(12))
    assert summary["steps"] == 12 and summary["updates"] == 0


def test_patience_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"train.nonfinite_patience: must be >= 1 or null"):
        TrainConfig(nonfinite_patience=0).validate()
