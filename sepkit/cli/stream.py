"""``sepkit stream``: separate a file block by block, as a live input would arrive."""

from __future__ import annotations

import argparse
from pathlib import Path

from sepkit.inference.common import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``sepkit stream``."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-dir", type=Path, help="training run of a causal model")
    source.add_argument("--checkpoint", type=Path, help="checkpoint or model file")
    parser.add_argument("input", type=Path, metavar="INPUT", help="WAV/FLAC at the model's rate")
    parser.add_argument("--out", type=Path, required=True, help="output folder (must exist)")
    parser.add_argument(
        "--block-size",
        type=int,
        default=None,
        help="samples read and pushed at a time (default: 8 ms worth)",
    )
    parser.add_argument(
        "--paced",
        action="store_true",
        help="wait for each block's time to come, as a sound card delivers it",
    )
    parser.add_argument(
        "--engine",
        choices=["torch", "onnxruntime"],
        default="torch",
        help="compute blocks in PyTorch, or export the stream to ONNX and run it with "
        "onnxruntime (several times faster for short blocks; default %(default)s)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")


def run(args: argparse.Namespace) -> int:
    """Stream the input through the model, write ``<stem>_s1.wav ...``, print the figures."""
    if args.block_size is not None and args.block_size < 1:
        raise InputError(f"--block-size {args.block_size}: must be at least 1 sample")
    if not args.out.is_dir():
        raise InputError(f"--out {args.out}: no such folder")
    from sepkit.inference import Separator
    from sepkit.inference.realtime import stream_file

    separator = Separator.from_pretrained(args.run_dir or args.checkpoint, device=args.device)
    live = separator.stream(engine=args.engine)
    block = args.block_size or max(1, round(0.008 * separator.sample_rate))
    report = stream_file(live, args.input, args.out, block, paced=args.paced)
    for path in report.outputs:
        print(path)
    print(report.summary())
    return 0
