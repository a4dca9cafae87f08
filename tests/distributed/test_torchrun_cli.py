"""`torchrun ... -m sepkit train`: time budgets end every rank together; a killed job resumes."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers.processes import kill_tree
from helpers.training import TINY_DROPOUT_MODEL, recipe_with_model, train_args

from sepkit.training.checkpoint import CheckpointManager, load_checkpoint

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def command(run_dir: Path, corpus: Path, *extra: str, recipe: Path | None = None) -> list[str]:
    """torchrun with 2 workers; ``recipe``: a recipe whose own model is used as it is."""
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m"]
    args = train_args(run_dir, corpus, *extra)
    if recipe is not None:
        args = train_args(run_dir, corpus, *extra, model=(), recipe=recipe)
    return [sys.executable, *launcher, *args]


@pytest.mark.slow
def test_time_budget_and_time_checkpoints_end_all_ranks_together(
    demo_corpus: Path, tmp_path: Path
) -> None:
    # Each rank reads its own clock; without agreement one rank would leave the loop (or enter
    # a checkpoint barrier) while the other waits in a collective: a hang, caught by the timeout.
    result = subprocess.run(
        command(
            tmp_path / "run",
            demo_corpus,
            "train.epochs=1000",
            "train.max_minutes=0.25",
            "train.checkpoint_every_minutes=0.02",
            "train.lr_scheduler=cosine",  # annealed by the ranks' agreed (mean) training time
        ),
        env=ENV,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    log = (tmp_path / "run" / "train.log").read_text()
    assert "training stopped (max_minutes)" in log
    assert len(CheckpointManager(tmp_path / "run" / "checkpoints").list()) >= 1
    with (tmp_path / "run" / "metrics.csv").open(newline="") as f:
        lrs = [float(row["lr"]) for row in csv.DictReader(f)]
    # 15 s of budget: the rate falls from the recipe's 1e-3 towards min_lr as the minutes pass.
    assert lrs[0] > 0.99e-3 and lrs[-1] < 0.25e-3 and lrs == sorted(lrs, reverse=True)


@pytest.mark.slow
@pytest.mark.parametrize("dropout", [False, True], ids=["convtasnet", "dprnn-dropout"])
def test_killed_torchrun_job_resumes_on_both_ranks_exactly(
    demo_corpus: Path, tmp_path: Path, dropout: bool
) -> None:
    """With dropout (issue 19.3): before, only rank 0's RNG state was saved and every rank
    restored it, so after the resume both ranks drew the same dropout masks and the weights left
    the uninterrupted run's."""
    extra = ("train.epochs=12", "train.checkpoint_every_steps=5", "seed=5")
    recipe = recipe_with_model(tmp_path, TINY_DROPOUT_MODEL) if dropout else None
    reference = tmp_path / "reference"
    subprocess.run(
        command(reference, demo_corpus, *extra, recipe=recipe), env=ENV, check=True, timeout=300
    )

    run_dir = tmp_path / "killed"
    # The whole job dies at once, as on a preempted node: torchrun and both workers.
    proc = subprocess.Popen(
        command(run_dir, demo_corpus, *extra, recipe=recipe),
        env=ENV,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while (
        time.monotonic() < deadline and len(CheckpointManager(run_dir / "checkpoints").list()) < 2
    ):
        time.sleep(0.2)
    assert proc.poll() is None, "the job finished before it could be killed"
    kill_tree(proc.pid)
    proc.wait(timeout=30)
    time.sleep(1.0)  # let the kernel reap the workers before reading the directory
    killed_at = CheckpointManager(run_dir / "checkpoints").list()[-1].step

    subprocess.run(
        command(run_dir, demo_corpus, *extra, recipe=recipe), env=ENV, check=True, timeout=300
    )
    log = (run_dir / "train.log").read_text()
    assert f"step {killed_at})" in log.split("resumed from")[1].splitlines()[0]
    final = load_checkpoint(CheckpointManager(run_dir / "checkpoints").list()[-1].path)
    expected = load_checkpoint(CheckpointManager(reference / "checkpoints").list()[-1].path)
    assert final["trainer"]["step"] == expected["trainer"]["step"]
    for name, value in expected["model_state"].items():
        assert torch.equal(final["model_state"][name], value), f"{name} differs after resume"
