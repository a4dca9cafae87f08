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
