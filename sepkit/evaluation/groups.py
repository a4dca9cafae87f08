"""Scores by group of test mixtures, and what a test set is: a mean alone hides both.

Separation is much harder when the speakers share a gender, so a test set's mean depends on its
mix of gender pairs; reporting female-male and same-gender means separately makes figures from
different test sets comparable. And a figure is only meaningful with its test set named: real
speakers never heard in training, or synthetic voices.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sepkit.utils.io import atomic_write_text


def gender_pair(genders: Sequence[str]) -> str:
    """``"female-male"``, ``"female-female"``, ``"male-male"`` (any order); ``""`` if unknown."""
    names = {"F": "female", "M": "male"}
    if not genders or any(g not in names for g in genders):
        return ""
    return "-".join(sorted(names[g] for g in genders))


def group_means(
    rows: Sequence[Mapping[str, Any]], group_of: Mapping[str, str], column: str = "si_snr_i"
) -> dict[str, dict[str, float | int]]:
    """``{group: {"mean", "median", "count"}}`` of ``column`` over the rows whose ID has a group;
    ``"same-gender"`` pools every pair of one gender."""
    values: dict[str, list[float]] = {}
    for row in rows:
        group = group_of.get(str(row["id"]), "")
        value = float(row.get(column, math.nan))
        if not group or not math.isfinite(value):
            continue
        values.setdefault(group, []).append(value)
        first, _, second = group.partition("-")
        if first == second:
            values.setdefault("same-gender", []).append(value)
    return {
        g: {"mean": float(np.mean(v)), "median": float(np.median(v)), "count": len(v)}
        for g, v in sorted(values.items())
    }


def describe_test_set(root: Path, split_path: str, n_speakers: int) -> dict[str, Any]:
    """What the split is, from the corpus's own ``corpus.json`` (sepkit prepare or prepare-demo):
    ``{"kind": "real" | "synthetic" | "unknown", "text": one line for people}``."""
    meta: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        meta = json.loads((Path(root) / "corpus.json").read_text())
    fmt = meta.get("format", "")
    if fmt == "sepkit-recordings":
        source = Path(str(meta.get("summary", {}).get("source", "recordings"))).name
        return {
            "kind": "real",
            "text": f"held-out real speakers: {n_speakers} speakers of {source} never heard in "
            "training",
        }
    if fmt == "sepkit-espeak-corpus":
        return {
            "kind": "synthetic",
            "text": f"synthetic speech: {n_speakers} eSpeak NG voices of families unseen in training",
        }
    return {"kind": "unknown", "text": f"{split_path} ({n_speakers or 'unknown'} speakers)"}


def add_to_summary(summary_path: Path, extra: Mapping[str, Any]) -> None:
    """Merge ``extra`` into a written ``test_summary.json`` (atomically)."""
    summary = json.loads(summary_path.read_text())
    summary.update(extra)
    atomic_write_text(summary_path, json.dumps(summary, indent=2, allow_nan=False) + "\n")
