"""``sepkit evaluate``: score a run's best checkpoint on a split."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "One pass over the split: per-utterance SI-SNR(i) and SDR(i) (and PESQ/STOI "
        "when installed) into RUN_DIR/test_results.csv and test_summary.json."
    )
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--split", default="test", choices=["test", "valid", "train"])
    p.add_argument("--checkpoint", type=Path, help="a specific checkpoint (default: best.pt)")
    p.add_argument(
        "--save-audio", action="store_true", help="write separated WAVs to RUN_DIR/audio"
    )
    p.add_argument(
        "--n-audio-to-save", type=int, default=None, help="at most N examples (default all)"
    )
    p.add_argument(
        "--metrics",
        default=None,
        help="comma-separated subset of si_snr,sdr,pesq,stoi (default: si_snr,sdr)",
    )
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. data.root=/corpus")


def run(args: argparse.Namespace) -> int:
    from sepkit.config import apply_overrides, build_dataclass, to_dict
    from sepkit.run import evaluate, load_run_config, setup_logging

    cfg = load_run_config(args.run_dir)  # first: a mistyped --run-dir must not be created
    setup_logging(args.run_dir)
    if args.overrides:
        from sepkit.recipe import RunConfig

        cfg = build_dataclass(RunConfig, apply_overrides(to_dict(cfg), args.overrides))
    metrics = tuple(m.strip() for m in args.metrics.split(",")) if args.metrics else None
    summary = evaluate(
        args.run_dir,
        cfg=cfg,
        split=args.split,
        checkpoint=args.checkpoint,
        save_audio=True if args.save_audio else None,
        n_audio_to_save=args.n_audio_to_save,
        metrics=metrics,
    )
    print_test_summary(summary)
    return 0


def print_test_summary(summary: dict | None) -> None:
    if not summary or "metrics" not in summary:
        return
    parts = []
    for name, stats in summary["metrics"].items():
        if isinstance(stats, dict) and "mean" in stats:
            parts.append(f"{name} {stats['mean']:.2f}")
    print(f"test ({summary.get('num_utterances', '?')} utterances): " + ", ".join(parts))
