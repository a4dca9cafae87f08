"""Fault injection, full form: every reliability scenario at full size; prints the figures table
and rewrites the measured block of docs/reliability.md.

The scenarios live in ``tests/helpers/faults/`` and are the same code the reliability tests run in
CI, in a reduced form (``--quick`` here runs that reduced form). Each one injects its faults into
real training runs and real CLI processes on a freshly generated corpus and measures the outcome.

    python bench/faults.py [--quick] [--only numerical,crashes] [--work DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "tests"))  # the shared scenarios and the test corpus spec

from common import print_table  # noqa: E402
from helpers.corpus import make_test_corpus  # noqa: E402
from run_all import cpu_name, rewrite  # noqa: E402

DOC = ROOT / "docs" / "reliability.md"

#: (name, module under tests/helpers/faults, section title), in the order of issue #9.
CATEGORIES = (
    ("numerical", "numerical", "Numerical faults"),
    ("crashes", "crashes", "Crashes (SIGKILL, restart with the same command)"),
    ("disk", "disk", "Disk faults"),
    ("bad_inputs", "bad_inputs", "Bad inputs"),
    ("ddp", "ddp", "DDP faults (torchrun, gloo, 2 ranks)"),
)


def load(module: str) -> ModuleType:
    import importlib

    return importlib.import_module(f"helpers.faults.{module}")


def run_category(
    module: ModuleType, work: Path, corpus: Path, full: bool
) -> tuple[list, list[str], list[list[str]], float, str]:
    """Figures, an optional per-case table (header, rows), seconds, and the traceback if the
    scenario itself broke. A module with ``run_with_details`` also gives the per-case rows."""
    start = time.perf_counter()
    header: list[str] = []
    rows: list[list[str]] = []
    try:
        if hasattr(module, "run_with_details"):
            figures, header, rows = module.run_with_details(work, corpus, full=full)
        else:
            figures = module.run(work, corpus, full=full)
        error = ""
    except Exception:  # a broken scenario is reported in place of its table
        figures, error = [], traceback.format_exc()
    return figures, header, rows, time.perf_counter() - start, error


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def header(quick: bool, only: list[str]) -> str:
    import torch

    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    flags = (" --quick" if quick else "") + (f" --only {','.join(only)}" if only else "")
    form = "reduced form (what CI runs)" if quick else "full form"
    return "\n".join(
        [
            f"Measured {now}, {form}, on {cpu_name()} ({platform.machine()}, "
            f"{os.cpu_count()} cores visible), Python {platform.python_version()}, "
            f"torch {torch.__version__}. Reproduce:",
            "",
            "```sh",
            f".venv/bin/python bench/faults.py{flags}",
            "```",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the reduced form CI runs")
    parser.add_argument("--only", default="", help="comma-separated categories")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (kept)")
    parser.add_argument("--out", type=Path, default=DOC, help="document to rewrite")
    args = parser.parse_args()
    only = [s for s in args.only.split(",") if s]
    unknown = set(only) - {name for name, _, _ in CATEGORIES}
    if unknown:
        parser.error(f"unknown categories: {', '.join(sorted(unknown))}")

    work = args.work or Path(tempfile.mkdtemp(prefix="sepkit-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus = make_test_corpus(work / "corpus")  # the demo_corpus fixture's
    sections, failed, total = [header(args.quick, only)], 0, 0.0
    for name, module, title in CATEGORIES:
        if only and name not in only:
            continue
        print(f"== {name} ...", flush=True)
        scratch = work / name
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        figures, detail_header, details, seconds, error = run_category(
            load(module), scratch, corpus, not args.quick
        )
        total += seconds
        rows = [
            [_cell(f.name), _cell(f.value), _cell(f.requirement), "yes" if f.ok else "**NO**"]
            for f in figures
        ]
        table = print_table(["figure", "measured", "required", "met"], rows) if rows else ""
        if details:
            cells = [[_cell(c) for c in row] for row in details]
            table += "\n\n" + print_table(detail_header, cells)
        failed += sum(not f.ok for f in figures) + bool(error)
        body = table + (f"\n\n**scenario failed:**\n\n```\n{error.strip()}\n```" if error else "")
        print(f"{error}({seconds:.0f} s)\n", flush=True)
        sections.append(f"### {title}\n\n`--only {name}`, {seconds:.0f} s\n\n{body}")
    sections.append(
        f"Total: {total / 60:.1f} minutes; unmet figures or broken scenarios: {failed}."
    )
    rewrite(args.out, "\n\n".join(sections))
    print(f"wrote {args.out} ({total / 60:.1f} minutes, {failed} unmet)")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
