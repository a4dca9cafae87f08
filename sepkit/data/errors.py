"""What the data pipeline reports when a corpus is unusable, and the bad-example report file."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sepkit.utils.io import atomic_write_text

#: Problem kinds (the ``problem`` text starts with one of these), with what to do about each.
HINTS: dict[str, str] = {
    "missing file": "restore the file or fix the path in the manifest / folder layout",
    "unreadable": "the file is not a valid audio file (truncated download?); re-create it",
    "sample rate": "resample the corpus, or set data.sample_rate to the corpus's rate",
    "channels": "store mono files (one channel per source)",
    "length mismatch": "mixture, sources and noise of one example must have equal lengths",
    "non-finite": "the file holds NaN or infinite samples; re-create it",
    "silent source": "a source is all zeros; drop the example or fix the source file",
    "duplicate id": "example IDs must be unique within a split",
    "missing column": "add the column to the CSV (see docs for the manifest format)",
    "incomplete row": "the CSV row has fewer values than the header (a write cut short?); "
    "complete or delete it",
    "source count": "set data.num_spks to the corpus's number of sources",
}


@dataclass(frozen=True)
class Problem:
    """One bad example: its ID, the offending file and what is wrong with it."""

    id: str
    file: str
    problem: str

    @property
    def hint(self) -> str:
        for kind, hint in HINTS.items():
            if self.problem.startswith(kind):
                return hint
        return ""

    def line(self) -> str:
        hint = f" -> {self.hint}" if self.hint else ""
        return f"  {self.id}: {self.file}: {self.problem}{hint}"


class DataError(ValueError):
    """The corpus cannot be used as configured; ``problems`` lists every bad example found."""

    def __init__(self, message: str, problems: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


def format_problems(header: str, problems: Sequence[Problem], limit: int = 50) -> str:
    lines = [header, *(p.line() for p in problems[:limit])]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more")
    return "\n".join(lines)


def write_bad_examples(path: Path, problems: Sequence[Problem]) -> None:
    """``bad_examples.csv``: one row per problem (an example can have several)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "file", "problem"])
    for p in problems:
        writer.writerow([p.id, p.file, p.problem])
    atomic_write_text(path, buf.getvalue())
