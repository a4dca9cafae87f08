"""Corpora, datasets and batching. The trainer only ever sees :class:`Batch`.

The names below are imported lazily: the corpus generator's worker processes import
``sepkit.data.synthetic.generate`` and should not pay for (or inherit threads from) importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sepkit.data.batch import Batch, Example, collate
    from sepkit.data.config import DataConfig
    from sepkit.data.dataset import DataError, SeparationDataset, build_dataset
    from sepkit.data.synthetic.generate import CorpusSpec, generate_corpus

_EXPORTS = {
    "Batch": "sepkit.data.batch",
    "Example": "sepkit.data.batch",
    "collate": "sepkit.data.batch",
    "DataConfig": "sepkit.data.config",
    "DataError": "sepkit.data.dataset",
    "SeparationDataset": "sepkit.data.dataset",
    "build_dataset": "sepkit.data.dataset",
    "CorpusSpec": "sepkit.data.synthetic.generate",
    "generate_corpus": "sepkit.data.synthetic.generate",
}

__all__ = [
    "Batch",
    "CorpusSpec",
    "DataConfig",
    "DataError",
    "Example",
    "SeparationDataset",
    "build_dataset",
    "collate",
    "generate_corpus",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sepkit.data' has no attribute {name!r}")
