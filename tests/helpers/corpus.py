"""The small real-speech corpus shared by the tests and the fault benches."""

from __future__ import annotations

from pathlib import Path

from sepkit.data.synthetic.generate import CorpusSpec, generate_corpus

#: 2 speakers, 8 kHz, 2–3 s utterances: 24 / 8 / 8 mixtures.
TEST_CORPUS_SPEC = CorpusSpec(
    num_speakers=2, n_train=24, n_valid=8, n_test=8, sample_rate=8000, seed=0,
    utterance_seconds=(2.0, 3.0),
)  # fmt: skip


def make_test_corpus(root: Path) -> Path:
    """Generate (or reuse, when complete with the same spec) the test corpus under ``root``."""
    generate_corpus(root, TEST_CORPUS_SPEC, progress=False, workers=2)
    return root
