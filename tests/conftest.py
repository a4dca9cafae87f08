"""Shared fixtures. Tests run with one torch thread: the CI machine has two cores."""

from __future__ import annotations

import fcntl
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

#: The small real-speech corpus shared by tests: 2 speakers, 8 kHz, 2–3 s utterances.
DEMO_CORPUS_SPEC = dict(
    num_speakers=2, n_train=24, n_valid=8, n_test=8, sample_rate=8000, seed=0,
    utterance_seconds=(2.0, 3.0),
)  # fmt: skip


@pytest.fixture(scope="session")
def demo_corpus(request: pytest.FixtureRequest) -> Path:
    """Root of a generated corpus (``train/valid/test`` folders + ``<split>.csv`` manifests).

    Kept in pytest's cache folder, so later sessions reuse it (the generator recognises a complete
    corpus with the same spec). Treat it as read-only: copy it (``shutil.copytree``) to modify it.
    """
    from sepkit.data.generate import CorpusSpec, generate_corpus

    root = Path(request.config.cache.mkdir("sepkit-demo-corpus"))
    with open(root.parent / "sepkit-demo-corpus.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # several test sessions may share the checkout
        generate_corpus(root, CorpusSpec(**DEMO_CORPUS_SPEC), progress=False, workers=2)  # type: ignore[arg-type]
    return root
