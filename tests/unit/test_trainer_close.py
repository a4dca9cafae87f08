"""Trainer.close / ``with Trainer(...)``: the logs of a trainer driven step by step are complete
on disk and TensorBoard's event file is closed when the block ends."""

from __future__ import annotations

import csv
import logging
import shutil
import threading
from pathlib import Path

import pytest
import torch
from helpers.tiny_model import TinySeparator

from sepkit.data import Batch
from sepkit.training import TrainConfig
from sepkit.training.trainer import Trainer

STEPS = 3


def make_trainer(run_dir: Path) -> Trainer:
    torch.manual_seed(0)
    model = TinySeparator()
    # log_every above STEPS: nothing reaches metrics.csv unless closing flushes it.
    config = TrainConfig(progress_bar=False, log_every=100)
    return Trainer(model, torch.optim.Adam(model.parameters()), config, run_dir=run_dir)


def batch(seed: int) -> Batch:
    src = torch.randn(2, 2, 1200, generator=torch.Generator().manual_seed(seed)) * 0.1
    return Batch(src.sum(1), src, [f"utt{seed}-{i}" for i in range(2)])


def test_with_block_writes_every_log_and_closes_the_event_file(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    threads = set(threading.enumerate())
    with make_trainer(tmp_path) as trainer:
        losses = [trainer.fit_batch(batch(s)) for s in range(STEPS)]
        tb = trainer.telemetry.tb
        assert tb is not None and tb.writer is not None, "the trainer should write TensorBoard"
        event_file = tb.writer
    assert event_file._records.closed, "the event file outlived the block"
    assert set(threading.enumerate()) <= threads, "logging must not leave threads behind"

    with (tmp_path / "metrics.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert [float(r["loss"]) for r in rows] == pytest.approx(losses, abs=1e-4)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3]
    shutil.rmtree(tmp_path / "tensorboard")  # nothing writes into it any more


def test_close_twice_is_harmless_and_csv_logging_goes_on(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path)
    trainer.fit_batch(batch(0))
    trainer.close()
    trainer.close()
    trainer.fit_batch(batch(1))
    trainer.close()
    with (tmp_path / "metrics.csv").open(newline="") as handle:
        assert [int(r["step"]) for r in csv.DictReader(handle)] == [1, 2]


def test_a_failed_flush_names_the_file(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(OSError, match=r"metrics\.csv"), make_trainer(run_dir) as trainer:
        trainer.fit_batch(batch(0))
        shutil.rmtree(run_dir)  # the run directory went away under the trainer


def test_the_error_that_ends_the_block_is_the_one_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A flush failing on the way out must not replace the error that stopped the run."""
    run_dir = tmp_path / "run"
    with (
        caplog.at_level(logging.WARNING, logger="sepkit.training.trainer"),
        pytest.raises(RuntimeError, match="the real problem"),
        make_trainer(run_dir) as trainer,
    ):
        trainer.fit_batch(batch(0))
        shutil.rmtree(run_dir)
        raise RuntimeError("the real problem")
    assert "metrics.csv" in caplog.text


def test_a_trainer_that_only_tests_leaves_no_tensorboard_file(tmp_path: Path) -> None:
    """`sepkit evaluate` builds a trainer on a finished run: it must not add empty event files
    beside the training's."""
    with make_trainer(tmp_path) as trainer:
        trainer.test([batch(0), batch(1)])
    assert (tmp_path / "test_results.csv").is_file()
    assert not list(tmp_path.glob("tensorboard/events.*"))
