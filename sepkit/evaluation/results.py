"""Per-utterance results (``test_results.csv``) and their summary (``test_summary.json``).

The CSV keeps SpeechBrain's layout (one row per utterance, then a ``mean`` row) so existing
analysis scripts read it; the JSON adds what a mean hides: median, spread, how many values were NaN
and the worst utterances, which is where one looks first when a model misbehaves. Means use
``nanmean`` so that one failed PESQ does not blank the column; the NaN count says it happened.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sepkit.utils.io import atomic_write_text

RESULTS_CSV = "test_results.csv"
SUMMARY_JSON = "test_summary.json"
MEAN_ROW_ID = "mean"
#: How many worst utterances (by SI-SNRi) the summary lists.
NUM_WORST = 5


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4f}"


def summarize(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], num_worst: int = NUM_WORST
) -> dict[str, Any]:
    """``{"num_utterances", "metrics": {name: {mean, median, std, min, max, num_nan}},
    "worst": [{id, si_snr_i}, ...]}`` over ``rows`` (dicts with ``id`` and the metric columns)."""
    summary: dict[str, Any] = {"num_utterances": len(rows), "metrics": {}}
    for column in columns:
        values = np.array([float(r.get(column, math.nan)) for r in rows], dtype=np.float64)
        finite = values[np.isfinite(values)]
        stats: dict[str, float | int | None] = {"num_nan": int(len(values) - len(finite))}
        for stat, func in (("mean", np.mean), ("median", np.median), ("std", np.std)):
            stats[stat] = float(func(finite)) if len(finite) else None
        stats["min"] = float(finite.min()) if len(finite) else None
        stats["max"] = float(finite.max()) if len(finite) else None
        summary["metrics"][column] = stats
    key = "si_snr_i" if "si_snr_i" in columns else (columns[0] if columns else None)
    worst: list[dict[str, Any]] = []
    if key is not None:
        scored = [
            (float(r.get(key, math.nan)), str(r["id"]))
            for r in rows
            if math.isfinite(float(r.get(key, math.nan)))
        ]
        worst = [{"id": i, key: v} for v, i in sorted(scored)[:num_worst]]
    summary["worst_by"] = key
    summary["worst"] = worst
    return summary


def results_csv_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """The CSV text: header ``id,<columns>``, one row per utterance, then the ``mean`` row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", *columns])
    for row in rows:
        writer.writerow([row["id"], *(_fmt(float(row.get(c, math.nan))) for c in columns)])
    means = summarize(rows, columns)["metrics"]
    writer.writerow(
        [
            MEAN_ROW_ID,
            *(_fmt(math.nan if means[c]["mean"] is None else means[c]["mean"]) for c in columns),
        ]
    )
    return buffer.getvalue()


def write_results(
    run_dir: Path,
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    extra: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Atomically write ``run_dir/test_results.csv`` and ``run_dir/test_summary.json`` (the
    summary with ``extra`` added: how the estimates were made, e.g. ``test_shifts``)."""
    run_dir = Path(run_dir)
    csv_path, json_path = run_dir / RESULTS_CSV, run_dir / SUMMARY_JSON
    atomic_write_text(csv_path, results_csv_text(rows, columns))
    summary = {**summarize(rows, columns), **(extra or {})}
    atomic_write_text(json_path, json.dumps(summary, indent=2, allow_nan=False) + "\n")
    return csv_path, json_path


class ResultsWriter:
    """Collects per-utterance rows during the test loop and writes both files at the end.

    Rows are kept in memory (a few floats per utterance) and the files rewritten whole and
    atomically by :meth:`write`, so an interrupted evaluation leaves the previous files intact
    instead of a CSV without its mean row. ``flush_every`` rewrites them periodically so a long
    evaluation shows progress; at 10k utterances a rewrite is ~1 MB, cheap next to the scoring.
    """

    def __init__(self, run_dir: Path, columns: Sequence[str], flush_every: int = 0) -> None:
        self.run_dir = Path(run_dir)
        self.columns = list(columns)
        self.flush_every = flush_every
        self.rows: list[dict[str, Any]] = []
        self._ids: set[str] = set()

    def add(self, utt_id: str, values: Mapping[str, float]) -> None:
        """Record one utterance; a duplicate ID is an error (it would make the CSV ambiguous)."""
        utt_id = str(utt_id)
        if utt_id in self._ids:
            raise ValueError(f"utterance {utt_id!r}: scored twice; test IDs must be unique")
        if utt_id == MEAN_ROW_ID:
            raise ValueError(f"utterance {utt_id!r}: the ID is reserved for the mean row")
        self._ids.add(utt_id)
        self.rows.append(
            {"id": utt_id, **{c: float(values.get(c, math.nan)) for c in self.columns}}
        )
        if self.flush_every and len(self.rows) % self.flush_every == 0:
            self.write()

    def summary(self) -> dict[str, Any]:
        return summarize(self.rows, self.columns)

    def write(self) -> tuple[Path, Path]:
        return write_results(self.run_dir, self.rows, self.columns)


def read_results(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Read a ``test_results.csv`` back (without its mean row): ``(rows, metric columns)``."""
    path = Path(path)
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            columns = [c for c in (reader.fieldnames or []) if c != "id"]
            rows: list[dict[str, Any]] = []
            for line, raw in enumerate(reader, start=2):
                if raw.get("id") == MEAN_ROW_ID:
                    continue
                row: dict[str, Any] = {"id": raw.get("id", "")}
                for c in columns:
                    try:
                        row[c] = float(raw[c]) if raw.get(c) not in (None, "") else math.nan
                    except ValueError as err:
                        raise ValueError(f"{path}:{line}: column {c!r}: {err}") from err
                rows.append(row)
    except OSError as err:
        raise OSError(f"{path}: cannot read test results ({err})") from err
    return rows, columns
