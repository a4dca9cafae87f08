"""Real training on generated speech: the loss goes down.

Resuming after SIGKILL (bit-exact, mid-checkpoint-write kills included) is the crashes category of
the reliability suite: tests/reliability/test_crashes.py.
"""

from __future__ import annotations

from pathlib import Path

import torch
from helpers.training import DEMO_RECIPE as RECIPE
from helpers.training import train_overrides

from sepkit.config import load_recipe
from sepkit.run import build_loader, build_model_for_run, make_trainer, train


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
