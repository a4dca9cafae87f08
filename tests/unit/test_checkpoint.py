"""Checkpoint files: atomic writes, best-N retention, corrupt files, clear errors."""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from helpers.tiny_model import TinySeparator

from sepkit.models.io import read_payload
from sepkit.training import TrainConfig
from sepkit.training.checkpoint import (
    AVERAGED,
    CHECKPOINT_FORMAT,
    CheckpointError,
    CheckpointManager,
    average_states,
    load_checkpoint,
)
from sepkit.training.telemetry import STEP_COLUMNS, CsvLog
from sepkit.training.trainer import Trainer
from sepkit.utils.io import WriteError, atomic_open


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


def test_averaged_model_is_the_mean_of_the_k_best(tmp_path: Path) -> None:
    manager = CheckpointManager(tmp_path, keep_best=1, average_best=3)
    manager.save(state(10), 10, -1.0)
    assert not (tmp_path / AVERAGED).exists()  # one validated checkpoint: nothing to average
    for step, loss in {20: -5.0, 30: -3.0, 40: -2.0, 50: None}.items():
        manager.save(state(step), step, loss)
    assert [c.step for c in manager.list()] == [20, 30, 40, 50]  # the three to average survive
    averaged = read_payload(tmp_path / AVERAGED)
    assert averaged["averaged_from"] == [f"ckpt-{s:09d}.pt" for s in (20, 30, 40)]
    assert averaged["valid_losses"] == [-5.0, -3.0, -2.0]
    torch.testing.assert_close(averaged["model_state"]["w"], torch.full((3,), 30.0))
    with pytest.raises(CheckpointError, match="a model file"):
        load_checkpoint(tmp_path / AVERAGED)  # a model file: not something to resume from
    manager.save(state(60), 60, -4.0)  # a new second best: the mean follows it
    averaged = read_payload(tmp_path / AVERAGED)
    assert averaged["averaged_from"] == [f"ckpt-{s:09d}.pt" for s in (20, 60, 30)]
    torch.testing.assert_close(averaged["model_state"]["w"], torch.full((3,), 110 / 3))
    # averaging switched off for the same directory: the derived file goes
    CheckpointManager(tmp_path, keep_best=2).recover()
    assert not (tmp_path / AVERAGED).exists()


def test_average_states_in_float64_keeps_dtypes_and_counters() -> None:
    gen = torch.Generator().manual_seed(0)
    states = [{"w": torch.randn(64, generator=gen).half(), "n": torch.tensor(k)} for k in range(5)]
    out = average_states(states)
    reference = torch.stack([s["w"].double() for s in states]).mean(0).half()
    assert out["w"].dtype == torch.float16 and torch.equal(out["w"], reference)
    assert out["n"].item() == 0  # integer buffers (counters) come from the best checkpoint
    with pytest.raises(CheckpointError, match="different models"):
        average_states([states[0], {"v": torch.zeros(1)}])


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


def test_write_error_names_the_target_and_the_root_cause(tmp_path: Path) -> None:
    """torch.save reports a failed write as ``RuntimeError: ... unexpected pos``; the disk's
    reason survives only as its context. atomic_open digs it out and names the target file."""
    target = tmp_path / "ckpt-000000009.pt"
    with pytest.raises(WriteError) as caught, atomic_open(target) as handle:
        handle.write(b"partial")
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos") from None
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(target)
    assert "No space left on device" in str(caught.value)
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone too


def test_metrics_append_into_a_deleted_run_directory_says_so(tmp_path: Path) -> None:
    """A run directory removed under a live run: the advice is not "free space"."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    log = CsvLog(run_dir / "metrics.csv", ("step", "loss"))
    log.append({"step": 1, "loss": 0.5})
    log.flush()
    shutil.rmtree(run_dir)
    log.append({"step": 2, "loss": 0.4})
    with pytest.raises(WriteError) as caught:
        log.flush()
    message = str(caught.value)
    assert caught.value.errno == errno.ENOENT
    assert "metrics.csv" in message and f"{run_dir} no longer exists" in message
    assert "free space" not in message
    assert "resumes from the newest checkpoint left" in message


@pytest.mark.parametrize(
    ("code", "advice"),
    [
        (errno.ENOSPC, "free space for"),
        (errno.EROFS, "writable"),
        (errno.EIO, "free space or make"),
    ],
)
def test_checkpoint_write_failure_advice_follows_the_errno(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, advice: str
) -> None:
    """The last good checkpoint is named, and the fix offered fits the cause. (No ENOENT case:
    save() re-creates a deleted directory, and then no earlier checkpoint is left to name.)"""
    manager = CheckpointManager(tmp_path / "checkpoints")
    manager.save({"model_state": {"w": torch.zeros(2)}}, step=3, valid_loss=-1.0)

    def failing_save(*_args: object, **_kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(WriteError) as caught:
        manager.save({"model_state": {"w": torch.ones(2)}}, step=6, valid_loss=-2.0)
    message = str(caught.value)
    assert "ckpt-000000003.pt (step 3), is intact" in message
    assert advice in message
    intact = torch.load(tmp_path / "checkpoints" / "ckpt-000000003.pt", weights_only=False)
    assert intact["valid_loss"] == -1.0


def test_resume_repairs_what_a_kill_leaves(tmp_path: Path) -> None:
    """A kill between publishing a checkpoint and updating the index, and one in the middle of a
    write: resume uses the newest checkpoint, re-indexes it, points best.pt at it, deletes the
    temporary file."""
    manager = CheckpointManager(tmp_path, keep_best=2)
    manager.save(state(3), 3, -1.0)
    payload = {"format": CHECKPOINT_FORMAT, "version": 1, "valid_loss": -2.0, **state(6)}
    with atomic_open(tmp_path / "ckpt-000000006.pt") as handle:  # published, never indexed
        torch.save(payload, handle)
    stray = tmp_path / ".ckpt-000000009.pt.k1ll3d_x.tmp"
    stray.write_bytes(b"half a checkpoint")

    path, loaded = manager.latest_loadable() or (None, {})
    assert path is not None and path.name == "ckpt-000000006.pt" and loaded["step"] == 6
    assert not stray.exists()
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["valid_loss"] == {"ckpt-000000003.pt": -1.0, "ckpt-000000006.pt": -2.0}
    assert index["best"] == "ckpt-000000006.pt"
    assert os.path.samefile(tmp_path / "best.pt", path)


def test_unchanged_best_leaves_no_temporary_link(tmp_path: Path) -> None:
    """rename(2) of a hard link over another link to the same file does nothing, successfully:
    relinking an unchanged best.pt used to leave .best.pt.tmp behind."""
    manager = CheckpointManager(tmp_path, keep_best=2)
    manager.save(state(1), 1, -5.0)
    manager.save(state(2), 2, None)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "best.pt", "ckpt-000000001.pt", "ckpt-000000002.pt", "index.json",
    ]  # fmt: skip


def test_metrics_row_cut_short_is_dropped_on_resume(tmp_path: Path) -> None:
    """A crash or a full disk in the middle of an append leaves a row without its line end; new
    rows would be glued onto it."""
    log = CsvLog(tmp_path / "metrics.csv", ("step", "loss"))
    for step in (1, 2, 3):
        log.append({"step": step, "loss": 0.5})
    log.flush()
    with (tmp_path / "metrics.csv").open("a") as handle:
        handle.write("4,0.")
    log.truncate_after(3)
    log.append({"step": 4, "loss": 0.25})
    log.flush()
    with (tmp_path / "metrics.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["step"], r["loss"]) for r in rows] == [("1", "0.5"), ("2", "0.5"), ("3", "0.5"),
                                                      ("4", "0.25")]  # fmt: skip


def test_start_from_scratch_drops_rows_of_a_killed_launch(tmp_path: Path) -> None:
    """A launch killed during its first checkpoint write has flushed metrics rows but left no
    checkpoint; the next launch trains from step 1 again and must not log those steps twice."""
    killed = CsvLog(tmp_path / "metrics.csv", STEP_COLUMNS)
    for step in (1, 2, 3):
        killed.append({"step": step, "loss": 1.0})
    killed.flush()
    model = TinySeparator()
    trainer = Trainer(
        model,
        torch.optim.Adam(model.parameters()),
        TrainConfig(progress_bar=False),
        run_dir=tmp_path,
        device="cpu",
    )
    assert trainer.resume() is False
    assert (tmp_path / "metrics.csv").read_text().splitlines() == [",".join(STEP_COLUMNS)]
