"""Checkpoint files: atomic writes, best-N retention, corrupt files, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sepkit.training.checkpoint import CheckpointError, CheckpointManager, load_checkpoint
from sepkit.utils.io import atomic_open


def state(step: int) -> dict:
    return {"model_spec": None, "model_state": {"w": torch.full((3,), float(step))}, "step": step}


def test_keeps_best_n_and_latest(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_best=2)
    losses = {10: -1.0, 20: -5.0, 30: -3.0, 40: -2.0, 50: None}
    for step, loss in losses.items():
        manager.save(state(step), step, loss)
    kept = [c.step for c in manager.list()]
    assert kept == [20, 30, 50]  # best two (-5, -3) plus the latest
    best = manager.best()
    assert best is not None and best.step == 20
    assert load_checkpoint(tmp_path / "best.pt")["step"] == 20


def test_corrupt_latest_is_set_aside_and_previous_used(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_best=3)
    manager.save(state(1), 1, -1.0)
    newest = manager.save(state(2), 2, -2.0)
    newest.write_bytes(newest.read_bytes()[:100])  # cut short, as by a disk fault
    path, payload = manager.latest_loadable() or (None, None)
    assert path is not None and path.name == "ckpt-000000001.pt"
    assert payload["step"] == 1
    assert (tmp_path / "ckpt-000000002.pt.corrupt").exists()  # kept, not deleted


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "cannot be read"),
        (b"not a checkpoint at all", "cannot be read"),
    ],
)
def test_unreadable_checkpoint_error_names_file(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "ckpt-000000007.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)


def test_model_file_is_not_a_training_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save({"format": "sepkit-model", "model_spec": {}, "model_state": {}}, path)
    with pytest.raises(CheckpointError, match="a model file, not a training checkpoint"):
        load_checkpoint(path)


def test_failed_write_leaves_previous_file_intact(tmp_path: Path) -> None:
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write(b"partial new content")
        raise RuntimeError("crash in the middle of the write")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]  # no temp file left behind
