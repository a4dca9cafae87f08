"""Evaluation: per-utterance metrics, results files, saved example audio (the test loop is Trainer.test)."""

from sepkit.evaluation.audio import save_example_audio
from sepkit.evaluation.metrics import (
    MetricWarning,
    align_estimates,
    available_metrics,
    utterance_metrics,
)
from sepkit.evaluation.results import ResultsWriter, read_results, write_results

__all__ = [
    "MetricWarning",
    "ResultsWriter",
    "align_estimates",
    "available_metrics",
    "read_results",
    "save_example_audio",
    "utterance_metrics",
    "write_results",
]
