"""``sepkit export``: a trained model as an ONNX file that runs without sepkit or torch."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``sepkit export``."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-dir", type=Path, help="training run (uses checkpoints/best.pt)")
    source.add_argument("--checkpoint", type=Path, help="checkpoint or model file")
    parser.add_argument("--format", choices=["onnx"], default="onnx", help="only onnx for now")
    parser.add_argument("--out", type=Path, required=True, help="file to write, e.g. model.onnx")
    parser.add_argument(
        "--stream",
        action="store_true",
        help="export a causal model's stateful stream (audio + state in, sources + state out) "
        "instead of the whole-signal model",
    )


def run(args: argparse.Namespace) -> int:
    """Export, then check the file with onnxruntime when it is installed."""
    from sepkit.export.onnx import check_output_path

    check_output_path(args.out)  # before the model loads: a typo fails at once
    from sepkit.export.onnx import export_onnx, verify
    from sepkit.inference.loading import load_model_for_separation

    model, rate, ckpt, _ = load_model_for_separation(args.run_dir or args.checkpoint)
    info = export_onnx(model, rate, args.out, stream=args.stream)
    print(f"wrote {info.path} ({info.form}, from {ckpt})")
    print("metadata: " + ", ".join(f"{k}={v}" for k, v in info.metadata.items()))
    worst = verify(info, model)
    if worst is None:
        print("not checked: onnxruntime is not installed (pip install onnxruntime)")
    else:
        print(f"checked with onnxruntime: max abs difference to PyTorch {worst:.2e}")
    return 0
