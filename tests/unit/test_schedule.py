"""The cosine schedule: warm-up, then annealing to min_lr exactly as the budget runs out."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from helpers.tiny_model import TinySeparator

from sepkit.data import Batch
from sepkit.training import TrainConfig
from sepkit.training.schedule import budget_progress, cosine_factor
from sepkit.training.trainer import Trainer

LR, MIN_LR, STEPS, WARMUP = 1e-2, 1e-4, 12, 3


def test_progress_is_the_nearest_bound() -> None:
    kw = dict(epoch_fraction=0.1, step=30, max_steps=100, seconds=120.0, max_minutes=4.0)
    assert budget_progress(**kw) == pytest.approx(0.5)  # 2 of 4 minutes beats 30 % of steps
    assert budget_progress(**{**kw, "max_minutes": None}) == pytest.approx(0.3)
    assert budget_progress(**{**kw, "max_minutes": None, "max_steps": None}) == pytest.approx(0.1)
    assert budget_progress(**{**kw, "seconds": 1e6}) == 1.0


def test_cosine_factor_warms_up_then_anneals_to_the_floor() -> None:
    floor = 0.01
    assert cosine_factor(0.0, 0, 4, floor) == pytest.approx(0.25)
    assert cosine_factor(0.0, 3, 4, floor) == pytest.approx(1.0)
    assert cosine_factor(0.5, 10, 4, floor) == pytest.approx(floor + (1 - floor) / 2)
    assert cosine_factor(1.0, 10, 4, floor) == pytest.approx(floor)


def _batches(count: int) -> list[Batch]:
    out = []
    for b in range(count):
        gen = torch.Generator().manual_seed(b)
        src = torch.randn(2, 2, 1200, generator=gen) * 0.1
        out.append(Batch(src.sum(1), src, [f"u{b}-{i}" for i in range(2)]))
    return out


def _trainer(run_dir: Path, max_steps: int) -> Trainer:
    torch.manual_seed(0)
    model = TinySeparator()
    config = TrainConfig(
        progress_bar=False,
        lr_scheduler="cosine",
        min_lr=MIN_LR,
        warmup_steps=WARMUP,
        epochs=1,
        max_steps=max_steps,
        log_every=1,
        checkpoint_every_minutes=None,
    )
    return Trainer(model, torch.optim.Adam(model.parameters(), lr=LR), config, run_dir=run_dir)


def _logged_lrs(run_dir: Path) -> list[float]:
    with (run_dir / "metrics.csv").open(newline="") as f:
        return [float(row["lr"]) for row in csv.DictReader(f)]


def test_cosine_schedule_in_a_real_run(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, STEPS)
    trainer.fit(_batches(STEPS))
    lrs = _logged_lrs(tmp_path)
    assert len(lrs) == STEPS
    expected = [
        LR * cosine_factor(k / STEPS, k, WARMUP, MIN_LR / LR) for k in range(STEPS)
    ]  # step k runs at the rate set after step k-1 (progress k / STEPS)
    assert lrs == pytest.approx(expected, rel=1e-6)
    assert lrs[:WARMUP] == sorted(lrs[:WARMUP]) and lrs[WARMUP:] == sorted(lrs[WARMUP:])[::-1]
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(MIN_LR)  # budget spent


def test_max_steps_and_warmup_count_updates_not_skipped_batches(tmp_path: Path) -> None:
    """Issue 19.5. Before: max_steps and warmup_steps counted batches, skipped ones included,
    while the docs said optimiser updates: 3 skipped batches ended the run 3 updates short."""
    skipped = {1, 5, 6}
    batches = _batches(60)  # more than the budget: max_steps ends the run, not the epoch
    for index in skipped:
        broken = batches[index].mix.clone()
        broken[0, 10] = float("nan")
        batches[index] = Batch(broken, batches[index].sources, batches[index].ids)
    trainer = _trainer(tmp_path, STEPS)
    summary = trainer.fit(batches)
    assert summary["stop_reason"] == "max_steps"
    assert trainer.updates == STEPS and trainer.step == STEPS + len(skipped)
    expected, updates = [], 0
    for index in range(STEPS + len(skipped)):
        # the rate of batch j is set after batch j - 1, from the updates made so far (the epoch
        # fraction j / 60 is the nearer bound only where it is larger)
        progress = max(updates / STEPS, index / len(batches))
        expected.append(LR * cosine_factor(progress, updates, WARMUP, MIN_LR / LR))
        updates += index not in skipped
    assert _logged_lrs(tmp_path) == pytest.approx(expected, rel=1e-6)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(MIN_LR)
