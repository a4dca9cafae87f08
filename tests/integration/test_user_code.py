"""The model contract and the pluggable objective from a user's side (issue 20): a model and a
loss of the user's own, named in a recipe by dotted path, train, checkpoint and separate; a
module sepkit did not build still trains, and what cannot be rebuilt from it says so."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers.tiny_model import TinySeparator
from helpers.training import recipe_with_model, train_args
from helpers.user_code import UserSeparator

from sepkit.data import Batch
from sepkit.models import build_model, spec_of
from sepkit.models.io import ModelFileError, save_model
from sepkit.training import TrainConfig
from sepkit.training.trainer import Trainer

TESTS = Path(__file__).parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}


def sepkit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, timeout=300, env=ENV
    )


def test_a_users_model_and_loss_train_checkpoint_and_separate(
    demo_corpus: Path, tmp_path: Path
) -> None:
    model = {"name": "helpers.user_code:UserSeparator", "channels": 12, "kernel": 16}
    recipe = recipe_with_model(tmp_path, model)
    run = tmp_path / "run"
    trained = sepkit(
        *train_args(
            run, demo_corpus, "train.epochs=2", "train.loss=helpers.user_code:negative_l1",
            model=(), recipe=recipe,
        )
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "no sepkit model card" not in trained.stderr
    checkpoint = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert checkpoint["model_spec"] == model
    assert checkpoint["config"]["train"]["loss"] == "helpers.user_code:negative_l1"
    # the training loss is the user's (mean absolute error: small and positive, not -dB)
    losses = [float(line.split(",")[3]) for line in (run / "metrics.csv").read_text().split()[1:]]
    assert all(0 < loss < 1 for loss in losses)

    mixture = next((demo_corpus / "test" / "mix").glob("*.wav"))
    separated = sepkit("sepkit", "separate", "--run-dir", str(run), str(mixture), "--out",
                       str(tmp_path / "out"))  # fmt: skip
    assert separated.returncode == 0, separated.stderr[-3000:]
    outputs = sorted((tmp_path / "out").rglob("*.wav"))
    assert len(outputs) == 2
    audio, rate = sf.read(outputs[0])
    assert rate == sf.info(mixture).samplerate and np.isfinite(audio).all()


def test_a_bad_user_model_is_one_clear_error(demo_corpus: Path, tmp_path: Path) -> None:
    recipe = recipe_with_model(tmp_path, {"name": "helpers.user_code:UserSeparator", "chanels": 8})
    result = sepkit(*train_args(tmp_path / "run", demo_corpus, model=(), recipe=recipe))
    assert result.returncode == 2
    assert "model: helpers.user_code:UserSeparator does not take these parameters" in result.stderr
    assert "Traceback" not in result.stderr


def test_build_model_gives_a_users_model_its_card() -> None:
    model = build_model({"name": "helpers.user_code:UserSeparator", "channels": 8}, 8000)
    assert isinstance(model, UserSeparator)
    assert spec_of(model) == {"name": "helpers.user_code:UserSeparator", "channels": 8}


def test_a_module_sepkit_did_not_build_trains_but_says_it_cannot_be_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    torch.manual_seed(0)
    model = TinySeparator()
    config = TrainConfig(progress_bar=False, epochs=1, checkpoint_every_minutes=None)
    trainer = Trainer(model, torch.optim.Adam(model.parameters()), config, run_dir=tmp_path)
    src = torch.randn(2, 2, 1200, generator=torch.Generator().manual_seed(0)) * 0.1
    with caplog.at_level(logging.WARNING, logger="sepkit.training.state"):
        trainer.fit([Batch(src.sum(1), src, ["a", "b"])] * 3)
        trainer.save_checkpoint()
    warnings = [r.getMessage() for r in caplog.records if "no sepkit model card" in r.getMessage()]
    assert len(warnings) == 1  # said once, at the first checkpoint
    assert "TinySeparator has no sepkit model card" in warnings[0]
    with pytest.raises(
        ModelFileError, match=r"not written: TinySeparator has no sepkit model card"
    ):
        save_model(tmp_path / "model.pt", model)
    assert not (tmp_path / "model.pt").exists()
    result = sepkit("sepkit", "separate", "--run-dir", str(tmp_path), str(tmp_path / "x.wav"),
                    "--out", str(tmp_path / "out"))  # fmt: skip
    assert result.returncode == 2
    assert "holds no model spec, so the model cannot be rebuilt from it alone" in result.stderr


def test_a_users_objective_from_python() -> None:
    """Trainer(objective=...): any (est, ref, lengths) -> (loss [B], perm [B, C])."""
    calls = []

    def mean_squared_error(est, ref, lengths):  # type: ignore[no-untyped-def]
        calls.append(est.shape)
        return ((est - ref) ** 2).mean((1, 2)), torch.arange(2).expand(est.shape[0], 2)

    torch.manual_seed(0)
    model = TinySeparator()
    trainer = Trainer(
        model,
        torch.optim.Adam(model.parameters(), lr=3e-3),
        TrainConfig(progress_bar=False, threshold_byloss=False),
        objective=mean_squared_error,
    )
    src = torch.randn(2, 2, 1200, generator=torch.Generator().manual_seed(1)) * 0.1
    batch = Batch(src.sum(1), src, ["a", "b"])
    first = trainer.fit_batch(batch)
    for _ in range(30):
        last = trainer.fit_batch(batch)
    assert calls and last < first
    assert trainer.evaluate([batch]) == pytest.approx(last, rel=0.5)
