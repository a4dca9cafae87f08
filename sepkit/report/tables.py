"""The run's files the report reads: CSV tables, numbers in them, the run config."""

from __future__ import annotations

import contextlib
import csv
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPORT_HTML = "report.html"
PLOTS_DIR = "plots"
AUDIO_DIR = "audio"
MAX_AUDIO_EXAMPLES = 5
_TRUE = {"1", "true", "yes", "y", "t"}


# --------------------------------------------------------------------------- reading


def read_table(path: Path) -> dict[str, list[str]]:
    """A CSV as ``{column: [raw strings]}``; {} when the file is absent. Rows with a different
    number of fields (a line cut by a crash) are skipped rather than failing the whole report."""
    if not path.is_file():
        return {}
    try:
        with path.open(newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if not header:
                return {}
            columns: dict[str, list[str]] = {name.strip(): [] for name in header}
            names = list(columns)
            for row in reader:
                if len(row) != len(names):
                    continue
                for name, value in zip(names, row, strict=True):
                    columns[name].append(value.strip())
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"{path}: cannot read ({err})") from err
    return columns


def numeric(table: dict[str, list[str]], name: str) -> np.ndarray | None:
    """Column as floats (NaN where empty or not a number; booleans as 0/1), None when absent."""
    if name not in table:
        return None
    out = np.full(len(table[name]), np.nan)
    for i, value in enumerate(table[name]):
        low = value.lower()
        if low in _TRUE:
            out[i] = 1.0
        elif low in {"0", "false", "no", "n", "f"}:
            out[i] = 0.0
        else:
            with contextlib.suppress(ValueError):
                out[i] = float(value)
    return out


def read_config(run_dir: Path) -> tuple[str, dict[str, Any]]:
    path = run_dir / "config.yaml"
    if not path.is_file():
        return "", {}
    text = path.read_text(errors="replace")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data = None
    return text, data if isinstance(data, dict) else {}


def clip_threshold(config: dict[str, Any]) -> float | None:
    raw: Any = (config.get("train") or {}).get("clip_grad_norm")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None
