"""Real training on generated speech: the loss goes down.

Resuming after SIGKILL (bit-exact, mid-checkpoint-write kills included) is the crashes category of
the reliability suite: tests/reliability/test_crashes.py.
"""

from __future__ import annotations

from pathlib import Path

import torch
from helpers.training import DEMO_RECIPE as RECIPE
from helpers.training import train_overrides

from sepkit.inference import resolve_checkpoint
from sepkit.models.io import read_payload
from sepkit.recipe import load_recipe
from sepkit.run import build_loader, build_model_for_run, make_trainer, train
from sepkit.training.checkpoint import CheckpointManager, load_checkpoint


def test_short_training_lowers_validation_loss(demo_corpus: Path, tmp_path: Path) -> None:
    overrides = ("train.epochs=6", "optim.lr=0.003", "train.average_best=2", "train.ema_decay=0.9")
    cfg = load_recipe(RECIPE, train_overrides(demo_corpus, *overrides))
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
    # average_best=2: the test scored the mean of the two best checkpoints, and `separate`
    # on the run directory uses that model too
    averaged = read_payload(run / "checkpoints" / "averaged.pt")
    two_best = CheckpointManager(run / "checkpoints").ranked()[:2]
    assert averaged["averaged_from"] == [c.path.name for c in two_best]
    states = [load_checkpoint(c.path)["model_state"] for c in two_best]
    for key, value in averaged["model_state"].items():
        torch.testing.assert_close(value, (states[0][key] + states[1][key]) / 2)
    assert resolve_checkpoint(run) == run / "checkpoints" / "averaged.pt"
    assert "evaluating averaged.pt (mean of" in (run / "train.log").read_text()
