"""A tiny corpus made by the real generator, shared by the integration tests of one session."""

from __future__ import annotations

from pathlib import Path

import pytest

from sepkit.data.generate import CorpusSpec, generate_corpus


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    spec = CorpusSpec(num_speakers=2, n_train=24, n_valid=6, n_test=6, sample_rate=8000, seed=7)
    generate_corpus(root, spec, progress=False)
    return root
