"""Real training on generated speech: the loss goes down, runs resume exactly after SIGKILL."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers.training import DEMO_RECIPE as RECIPE
from helpers.training import train_args, train_overrides

from sepkit.config import load_recipe
from sepkit.run import build_loader, build_model_for_run, make_trainer, train
from sepkit.training.checkpoint import CheckpointManager, load_checkpoint


def test_short_training_lowers_validation_loss(demo_corpus: Path, tmp_path: Path) -> None:
    cfg = load_recipe(RECIPE, train_overrides(demo_corpus, "train.epochs=6", "optim.lr=0.003"))
    torch.manual_seed(cfg.seed)
    model = build_model_for_run(cfg)
    valid = build_loader(cfg, "valid", train=False, report_dir=None)
    before = make_trainer(cfg, None, model).evaluate(valid)
    summary = train(cfg, tmp_path / "run", test_after=True)
    after = summary["best_valid_loss"]
    assert summary["updates"] > 0
    assert after < before - 1.0, f"validation loss {before:.2f} -> {after:.2f}"
    # The run directory holds what the README promises.
    run = tmp_path / "run"
    for name in ("config.yaml", "train.log", "metrics.csv", "valid.csv", "test_results.csv"):
        assert (run / name).is_file(), name
    assert (run / "checkpoints" / "best.pt").is_file()
    assert summary["test"]["num_utterances"] == 8


def _command(corpus: Path, run_dir: Path) -> list[str]:
    extra = ("train.epochs=4", "train.checkpoint_every_steps=3", "seed=3")
    return [sys.executable, "-m", *train_args(run_dir, corpus, *extra)]


def _final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    latest = CheckpointManager(run_dir / "checkpoints").list()[-1]
    return load_checkpoint(latest.path)["model_state"]


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_matches_uninterrupted(
    demo_corpus: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference_dir = tmp_path / "reference"
    subprocess.run(_command(demo_corpus, reference_dir), check=True, env=env, timeout=300)

    run_dir = tmp_path / "killed"
    rng = random.Random(1234)
    kills = 0
    for _attempt in range(3):
        proc = subprocess.Popen(_command(demo_corpus, run_dir), env=env, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(3.0, 7.0))  # torch import + a share of the steps
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        # Whatever the moment of the kill, every checkpoint on disk loads.
        for info in CheckpointManager(run_dir / "checkpoints").list():
            load_checkpoint(info.path)
        assert not list((run_dir / "checkpoints").glob("*.corrupt")) if run_dir.exists() else True
    assert kills >= 1, "the run finished before any kill; lengthen it"
    subprocess.run(_command(demo_corpus, run_dir), check=True, env=env, timeout=300)

    reference, resumed = _final_weights(reference_dir), _final_weights(run_dir)
    assert reference.keys() == resumed.keys()
    for name in reference:
        assert torch.equal(reference[name], resumed[name]), f"{name} differs after resume"
    steps = [int(r.split(",")[0]) for r in (run_dir / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == sorted(set(steps)), "metrics.csv holds a step twice after resume"
