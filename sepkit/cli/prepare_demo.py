"""``sepkit prepare-demo``: generate the built-in eSpeak NG corpus (its arguments and its run)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``sepkit prepare-demo`` (the CLI only wires these)."""
    from sepkit.data.synthetic.generate import CorpusSpec

    d = CorpusSpec()
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--num-speakers", type=int, default=d.num_speakers, help="sources per mix")
    parser.add_argument("--n-train", type=int, default=d.n_train)
    parser.add_argument("--n-valid", type=int, default=d.n_valid)
    parser.add_argument("--n-test", type=int, default=d.n_test)
    parser.add_argument("--sample-rate", type=int, default=d.sample_rate, choices=(8000, 16000))
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--mode", choices=("min", "max"), default=d.mode)
    parser.add_argument("--noise", action="store_true", help="add a WHAM!-like noise track")
    parser.add_argument(
        "--overlap",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=d.overlap,
        help="'max' mode: range of target overlap between sources (fraction)",
    )
    parser.add_argument(
        "--formant-shift",
        type=float,
        default=d.formant_shift,
        help="scale each training speaker's formants by a factor within [1/(1+X), 1+X] "
        "(new timbres; valid/test voices unchanged; 0 = off)",
    )
    parser.add_argument(
        "--timbre-jitter",
        type=float,
        default=d.timbre_jitter,
        help="also move each training speaker's formants one by one: frequency within "
        "[1/(1+X), 1+X], height within twice that (0 = off)",
    )
    parser.add_argument(
        "--cross-gender",
        type=float,
        default=d.cross_gender,
        help="share of training speakers rendered as the other gender (0 = off)",
    )
    parser.add_argument(
        "--train-speakers-per-variant",
        type=int,
        default=d.train_speakers_per_variant,
        help="training speakers made from each eSpeak voice variant (default: as valid/test)",
    )
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Build the spec from parsed arguments, generate, print a summary; return an exit code."""
    from sepkit.data.synthetic.generate import CorpusSpec, generate_corpus, synth

    try:
        spec = CorpusSpec(
            num_speakers=args.num_speakers,
            n_train=args.n_train,
            n_valid=args.n_valid,
            n_test=args.n_test,
            sample_rate=args.sample_rate,
            seed=args.seed,
            mode=args.mode,
            noise=args.noise,
            overlap=tuple(args.overlap),
            formant_shift=args.formant_shift,
            timbre_jitter=args.timbre_jitter,
            cross_gender=args.cross_gender,
            train_speakers_per_variant=args.train_speakers_per_variant,
        )
    except ValueError as err:
        print(f"prepare-demo: {err}", file=sys.stderr)
        return 2
    try:
        summary = generate_corpus(
            args.out, spec, progress=not args.no_progress, workers=args.workers
        )
    except synth.SynthError as err:
        print(f"prepare-demo: {err}", file=sys.stderr)
        return 1
    if summary.get("reused"):
        print(f"corpus in {args.out} is complete and matches the request; reusing it")
    for split, s in summary["splits"].items():
        print(
            f"{split:5s}: {s['mixtures']} mixtures, {s['hours']:.2f} h, {s['speakers']} speakers, "
            f"mean overlap {s['mean_overlap_ratio']:.2f}"
        )
    if not summary.get("reused"):
        print(f"{summary['mixtures_per_second']} mixtures/s with {summary['workers']} workers")
    return 0
