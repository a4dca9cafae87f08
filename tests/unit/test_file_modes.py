"""Files sepkit writes atomically get the mode a plain open() would give: the umask decides.

mkstemp creates its temporary file 0600; renamed into place as it was, every checkpoint, report
and separated WAV was unreadable to the user's group on a shared cluster.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from sepkit.evaluation.audio import write_wav
from sepkit.training.checkpoint import CheckpointManager
from sepkit.utils.io import atomic_write_text, current_umask


@pytest.fixture(params=[0o022, 0o002, 0o077])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_files_honour_the_umask(umask: int, tmp_path: Path) -> None:
    assert current_umask() == umask
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic_write_text(tmp_path / "report.html", "<html></html>")
    assert _mode(tmp_path / "report.html") == _mode(plain) == 0o666 & ~umask
    manager = CheckpointManager(tmp_path / "checkpoints")
    saved = manager.save({"step": 1, "w": torch.zeros(2)}, step=1, valid_loss=-3.0)
    write_wav(tmp_path / "audio" / "s1.wav", np.zeros(800, np.float32), 8000)
    written = [saved, *(tmp_path / "checkpoints").iterdir(), tmp_path / "audio" / "s1.wav"]
    for path in written:
        assert _mode(path) == 0o666 & ~umask, path.name
