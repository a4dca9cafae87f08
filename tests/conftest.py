"""Shared fixtures. Tests run with one torch thread: the CI machine has two cores."""

from __future__ import annotations

import fcntl
from pathlib import Path

import pytest
import torch
from helpers.corpus import make_test_corpus

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def demo_corpus(request: pytest.FixtureRequest) -> Path:
    """Root of a generated corpus (``train/valid/test`` folders + ``<split>.csv`` manifests).

    Kept in pytest's cache folder, so later sessions reuse it (the generator recognises a complete
    corpus with the same spec). Treat it as read-only: copy it (``shutil.copytree``) to modify it.
    """
    root = Path(request.config.cache.mkdir("sepkit-demo-corpus"))
    with open(root.parent / "sepkit-demo-corpus.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # several test sessions may share the checkout
        make_test_corpus(root)
    return root
