"""``sepkit demo``: make the built-in corpus, train, evaluate and write a report (its arguments and its run)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    parser.add_argument(
        "--minutes", type=float, default=15.0, help="training budget in minutes (default 15)"
    )
    parser.add_argument(
        "--corpus",
        choices=("real", "synthetic"),
        default="real",
        help="real: the 200 LibriSpeech speakers shipped with sepkit (default); synthetic: "
        "eSpeak NG voices, the first demo",
    )
    parser.add_argument(
        "--recipe",
        type=Path,
        default=None,
        help="default: recipes/demo.yaml (real) or recipes/demo-synthetic.yaml",
    )
    parser.add_argument("--n-train", type=int, default=None, help="training mixtures")
    parser.add_argument("--n-valid", type=int, default=None, help="validation mixtures")
    parser.add_argument("--n-test", type=int, default=None, help="test mixtures")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--procs",
        type=int,
        default=None,
        help="training processes (DDP under torchrun, one thread each); default: one per CPU "
        "core, at most 2, or 1 on a GPU machine",
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="recipe overrides")


def run(args: argparse.Namespace) -> int:
    from sepkit.demo import (
        RECIPES,
        default_procs,
        format_summary,
        prepare_real,
        prepare_synthetic,
        stop_reason,
        train_with_torchrun,
    )
    from sepkit.recipe import load_recipe
    from sepkit.run import evaluate, setup_logging, train, training_summary

    out: Path = args.out
    corpus_dir = out / "corpus"
    run_dir = out / "run"
    recipe = args.recipe or RECIPES[args.corpus]
    setup_logging(None)
    what = "real speech, LibriSpeech" if args.corpus == "real" else "synthetic eSpeak NG voices"
    print(f"[1/4] corpus ({what}): {corpus_dir}")
    prepare = prepare_real if args.corpus == "real" else prepare_synthetic
    corpus_overrides = prepare(corpus_dir, args)

    overrides = [
        *corpus_overrides,
        f"data.root={corpus_dir}",
        f"train.max_minutes={args.minutes}",
        f"seed={args.seed}",
        *args.overrides,
    ]
    cfg = load_recipe(recipe, overrides)
    procs = args.procs or default_procs()
    print(
        f"[2/4] training {cfg.model.get('name')} for up to {args.minutes:g} min with {procs} "
        f"process{'es' if procs > 1 else ''}: {run_dir}"
    )
    if procs > 1:
        train_with_torchrun(recipe, run_dir, overrides, procs)
    else:
        train(cfg, run_dir, test_after=False)
    summary = training_summary(run_dir)
    summary["stop_reason"] = stop_reason(cfg, summary)

    what = "the best checkpoint"
    if cfg.train.average_best > 1:
        what = f"the mean of the {cfg.train.average_best} best checkpoints"
    print(f"[3/4] evaluating {what} on the test split")
    test = evaluate(run_dir, cfg=cfg, save_audio=True, n_audio_to_save=10)

    print("[4/4] report")
    from sepkit.report import write_report

    report = write_report(run_dir)
    print(format_summary(summary, test, run_dir, report))
    return 0
