"""``sepkit report``: write RUN_DIR/report.html (its arguments and its run)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``sepkit report``."""
    from sepkit.report.tables import MAX_AUDIO_EXAMPLES

    parser.add_argument("--run-dir", type=Path, required=True, help="training run directory")
    parser.add_argument(
        "--embed-audio",
        action="store_true",
        help="embed the example audio in report.html (one file to share; larger page)",
    )
    parser.add_argument(
        "--max-examples",
        type=int,
        default=MAX_AUDIO_EXAMPLES,
        help="saved examples to show with audio players (default %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    from sepkit.report import write_report

    try:
        path = write_report(
            args.run_dir, embed_audio=args.embed_audio, max_examples=args.max_examples
        )
    except (OSError, ValueError) as err:
        print(f"sepkit report: error: {err}", file=sys.stderr)
        return 1
    print(path)
    return 0
