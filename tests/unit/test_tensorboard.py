"""TensorBoard is an optional extra (issue 19.9): when it cannot be used the run says so once and
goes on with metrics.csv, and using it changes nothing process-wide."""

from __future__ import annotations

import importlib.abc
import logging
import sys
import threading
from pathlib import Path

import pytest
import torch
from helpers.tiny_model import TinySeparator

from sepkit.data import Batch
from sepkit.training import TrainConfig
from sepkit.training.trainer import Trainer

LOGGER = "sepkit.training.telemetry"


def trained_one_step(run_dir: Path) -> Trainer:
    torch.manual_seed(0)
    model = TinySeparator()
    trainer = Trainer(
        model,
        torch.optim.Adam(model.parameters()),
        TrainConfig(progress_bar=False, log_every=1),
        run_dir=run_dir,
    )
    src = torch.randn(2, 2, 1200, generator=torch.Generator().manual_seed(0)) * 0.1
    trainer.fit_batch(Batch(src.sum(1), src, ["a", "b"]))
    trainer.close()
    return trainer


@pytest.fixture
def no_tensorboard_cached(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Forget every imported tensorboard module (restored after the test)."""
    for name in [n for n in sys.modules if n == "tensorboard" or n.startswith("tensorboard.")]:
        monkeypatch.delitem(sys.modules, name)
    return monkeypatch


class _NotInstalled(importlib.abc.MetaPathFinder):
    """Finds nothing called tensorboard, as on a machine without it."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "tensorboard" or name.startswith("tensorboard."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


def test_not_installed_is_said_once(
    no_tensorboard_cached: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    no_tensorboard_cached.setattr(sys, "meta_path", [_NotInstalled(), *sys.meta_path])
    with caplog.at_level(logging.INFO, logger=LOGGER):
        trained_one_step(tmp_path)
    assert "TensorBoard is not installed (pip install 'sepkit[tensorboard]')" in caplog.text
    assert (tmp_path / "metrics.csv").is_file() and not (tmp_path / "tensorboard").exists()


def test_a_broken_install_is_a_warning_with_its_error(
    no_tensorboard_cached: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: any error setting TensorBoard up was swallowed without a word."""
    broken = tmp_path / "site" / "tensorboard"
    broken.mkdir(parents=True)
    # The classic failure of a protobuf too new for the installed tensorboard.
    (broken / "__init__.py").write_text("raise TypeError('Descriptors cannot be created directly')")
    no_tensorboard_cached.syspath_prepend(str(broken.parent))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        trained_one_step(tmp_path / "run")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "TensorBoard is off: importing it failed (Descriptors cannot be created directly)" in (
        warnings[0].getMessage()
    )
    assert (tmp_path / "run" / "metrics.csv").is_file()


def test_logging_leaves_the_process_wide_thread_hook_alone(tmp_path: Path) -> None:
    """Before: the first trainer with TensorBoard replaced threading.excepthook for the whole
    process (to quiet the writer thread's tracebacks)."""
    hook = threading.excepthook
    trainer = trained_one_step(tmp_path)
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert trainer.telemetry.tb is not None
    assert threading.excepthook is hook
