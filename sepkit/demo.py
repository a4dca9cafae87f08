"""``sepkit demo``: from nothing to a trained separator, a report and audio, in one command.

Layout under ``--out`` (default ``runs/demo``)::

    corpus/   the built-in 2-speaker corpus (generated once, reused)
    run/      the training run directory (resumed when present)

Re-running continues where the previous run stopped: the corpus is reused, training resumes from
the newest checkpoint until the (cumulative) budget is spent, and evaluation and the report are
redone from the best checkpoint.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path
from typing import Any

from sepkit.config import load_recipe

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "demo.yaml"


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    parser.add_argument(
        "--minutes", type=float, default=15.0, help="training budget in minutes (default 15)"
    )
    parser.add_argument("--recipe", type=Path, default=RECIPE, help="default: recipes/demo.yaml")
    parser.add_argument("--n-train", type=int, default=None, help="training mixtures")
    parser.add_argument("--n-valid", type=int, default=None, help="validation mixtures")
    parser.add_argument("--n-test", type=int, default=None, help="test mixtures")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides")


def corpus_sizes(minutes: float) -> tuple[int, int, int]:
    """Enough distinct training mixtures that the budget never sees one twice too often."""
    if minutes <= 3:
        return 300, 40, 50
    return 3000, 150, 200


def run_demo(args: argparse.Namespace) -> int:
    from sepkit.data.generate import CorpusSpec, generate_corpus
    from sepkit.run import evaluate, setup_logging, train

    out: Path = args.out
    corpus_dir = out / "corpus"
    run_dir = out / "run"
    n_train, n_valid, n_test = corpus_sizes(args.minutes)
    spec = CorpusSpec(
        num_speakers=2,
        n_train=args.n_train or n_train,
        n_valid=args.n_valid or n_valid,
        n_test=args.n_test or n_test,
        sample_rate=8000,
        seed=args.seed,
    )
    setup_logging(None)
    print(f"[1/4] corpus: {corpus_dir}")
    generate_corpus(corpus_dir, spec, progress=True)

    overrides = [
        f"data.root={corpus_dir}",
        f"train.max_minutes={args.minutes}",
        f"seed={args.seed}",
        *args.overrides,
    ]
    cfg = load_recipe(args.recipe, overrides)
    print(f"[2/4] training {cfg.model.get('name')} for up to {args.minutes:g} min: {run_dir}")
    summary = train(cfg, run_dir, test_after=False)

    print("[3/4] evaluating the best checkpoint on the test split")
    test = evaluate(run_dir, cfg=cfg, save_audio=True, n_audio_to_save=10)

    print("[4/4] report")
    from sepkit.report import write_report

    report = write_report(run_dir)
    print(format_summary(summary, test, run_dir, report))
    return 0


def _filtered_examples(run_dir: Path) -> int:
    path = run_dir / "metrics.csv"
    if not path.exists():
        return 0
    with path.open(newline="") as handle:
        return sum(int(float(row.get("filtered") or 0)) for row in csv.DictReader(handle))


def format_summary(
    summary: dict[str, Any], test: dict[str, Any], run_dir: Path, report: Path
) -> str:
    metrics = test.get("metrics", {})

    def stat(name: str, key: str) -> str:
        value = metrics.get(name, {}).get(key)
        return "n/a" if value is None or not math.isfinite(value) else f"{value:.2f} dB"

    reasons = summary.get("skip_reasons") or {}
    skipped = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())) or "none"
    lines = [
        "",
        "sepkit demo — summary",
        f"  test SI-SNRi   mean {stat('si_snr_i', 'mean')}, median {stat('si_snr_i', 'median')}"
        f"  ({test.get('num_utterances', 0)} utterances, speakers unseen in training)",
        f"  test SDRi      mean {stat('sdr_i', 'mean')}",
        f"  training       {summary['steps']} steps ({summary['updates']} updates) in "
        f"{summary['train_seconds'] / 60:.1f} min, stopped by {summary['stop_reason']}",
        f"  skipped steps  {summary['nonfinite_count']} ({skipped})",
        f"  filtered       {_filtered_examples(run_dir)} easy examples left out of the loss "
        "(threshold)",
        f"  report         {report}",
        f"  audio          {run_dir / 'audio'}",
        f"  results        {run_dir / 'test_results.csv'}",
    ]
    return "\n".join(lines)
