"""``sepkit separate``: its arguments, checked before the model loads, and the run."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from sepkit.inference.common import (
    DEFAULT_CHUNK_SECONDS,
    DEFAULT_OVERLAP_SECONDS,
    InputError,
    overlap_fits,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``sepkit separate``."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-dir", type=Path, help="training run (uses checkpoints/best.pt)")
    source.add_argument("--checkpoint", type=Path, help="checkpoint or model file")
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="WAV/FLAC files")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--chunk-seconds",
        type=float,
        default=DEFAULT_CHUNK_SECONDS,
        help="chunk length for long files; 0 = whole file at once (default %(default)s)",
    )
    parser.add_argument(
        "--overlap-seconds",
        type=float,
        default=DEFAULT_OVERLAP_SECONDS,
        help="overlap between chunks (default %(default)s)",
    )
    parser.add_argument(
        "--shifts",
        type=int,
        default=None,
        help="average the estimate over this many sub-frame shifts of the input (slower, "
        "better); default: the run's train.test_shifts, 1 if it has none",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")


def run(args: argparse.Namespace) -> int:
    """Run ``sepkit separate`` and print the written files.

    Failures propagate as exceptions (:class:`InputError`, :class:`ModelFileError`, ``OSError``):
    :func:`sepkit.cli.main` turns each into one ``sepkit: error:`` line and the exit status every
    other subcommand uses, so scripts need not special-case ``separate``.
    """
    from sepkit.inference import Separator

    _check_options(args.chunk_seconds, args.overlap_seconds, args.shifts)
    separator = Separator.from_pretrained(
        args.run_dir or args.checkpoint,
        chunk_seconds=args.chunk_seconds,
        overlap_seconds=args.overlap_seconds,
        device=args.device,
        shifts=args.shifts,
    )
    for written in separator.separate_files(args.inputs, args.out):
        for path in written:
            print(path)
    return 0


def _check_options(chunk_seconds: float, overlap_seconds: float, shifts: int | None) -> None:
    """Option values, checked before the model is loaded; the error names the option."""

    if shifts is not None and shifts < 1:
        raise InputError(f"--shifts {shifts}: must be >= 1 (1 = a single pass)")
    if not chunk_seconds >= 0 or math.isinf(chunk_seconds):  # also catches NaN
        raise InputError(
            f"--chunk-seconds {chunk_seconds}: must be a length in seconds, or 0 for the whole "
            "file at once"
        )
    if chunk_seconds and not overlap_fits(chunk_seconds, overlap_seconds):
        raise InputError(
            f"--overlap-seconds {overlap_seconds}: must be between 0 and half of --chunk-seconds "
            f"({chunk_seconds})"
        )
