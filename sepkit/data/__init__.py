"""Corpora, datasets and batching. The trainer only ever sees :class:`Batch`."""

from sepkit.data.batch import Batch, Example, collate
from sepkit.data.config import DataConfig

__all__ = ["Batch", "DataConfig", "Example", "collate"]
