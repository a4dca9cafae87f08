"""Live separation with the causal Conv-TasNet: latency and real-time factor on one thread.

The model of ``recipes/demo-causal.yaml`` separates 10 s of audio at 8 kHz four ways, timed
side by side in one process (interleaved rounds): offline on the whole signal (the baseline),
and as a live stream (:class:`sepkit.inference.LiveSeparator`) in blocks of 2, 8 and 16 ms;
and, when onnxruntime is installed, the exported stream (``sepkit export --stream``) in the
same blocks. Real-time factor = compute seconds / audio seconds. Latency = the algorithmic
latency (the encoder window) + one block (a block is only processed once it has arrived).
Goal: real-time factor <= 0.1 on one thread with latency <= 20 ms.

    python bench/streaming.py [--threads 1] [--quick]
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import base_parser, interleaved_medians, machine_line, print_table

from sepkit.inference import LiveSeparator
from sepkit.models import build_model
from sepkit.recipe import load_recipe

RECIPE = load_recipe(Path(__file__).parents[1] / "recipes" / "demo-causal.yaml")
RATE = RECIPE.data.sample_rate
SECONDS = 10.0
BLOCKS_MS = (2, 8, 16)


def offline(model: torch.nn.Module, mix: np.ndarray) -> Callable[[], object]:
    tensor = torch.from_numpy(mix)[None]

    def run() -> object:
        with torch.inference_mode():
            return model(tensor)

    return run


def torch_stream(model: torch.nn.Module, mix: np.ndarray, block: int) -> Callable[[], object]:
    def run() -> object:
        live = LiveSeparator(model, RATE)
        for start in range(0, len(mix), block):
            live.push(mix[start : start + block])
        return live.finish()

    return run


def onnx_stream(path: Path, mix: np.ndarray, block: int, threads: int) -> Callable[[], object]:
    import onnx
    import onnxruntime as ort

    meta = {p.key: int(p.value) for p in onnx.load(str(path)).metadata_props if p.value.isdigit()}
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    hop = meta["hop"]

    def run() -> object:
        state = np.zeros((1, meta["state_size"]), np.float32)
        pending = np.zeros(0, np.float32)
        for start in range(0, len(mix), block):  # the caller's loop: whole hops only
            pending = np.concatenate([pending, mix[start : start + block]])
            usable = len(pending) - len(pending) % hop
            if usable:
                _, state = session.run(None, {"audio": pending[None, :usable], "state": state})
                pending = pending[usable:]
        return state

    return run


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (2 if args.quick else 7)
    torch.manual_seed(0)
    model = build_model(RECIPE.model, RATE).eval()
    mix = (0.05 * np.random.default_rng(0).standard_normal(int(SECONDS * RATE))).astype(np.float32)
    window = LiveSeparator(model, RATE).latency
    candidates: dict[str, Callable[[], object]] = {"offline": offline(model, mix)}
    blocks = {ms: ms * RATE // 1000 for ms in BLOCKS_MS}
    for ms, block in blocks.items():
        candidates[f"torch {ms}"] = torch_stream(model, mix, block)
    note = ""
    try:
        from sepkit.export import export_onnx

        folder = tempfile.mkdtemp()
        path = Path(folder) / "stream.onnx"
        export_onnx(model, RATE, path, stream=True)
        for ms, block in blocks.items():
            candidates[f"onnxruntime {ms}"] = onnx_stream(path, mix, block, args.threads)
    except ImportError as err:
        note = f"onnxruntime rows skipped: {err}"
    medians = interleaved_medians(candidates, repeats, warmup=1)
    print(
        f"Causal Conv-TasNet (recipes/demo-causal.yaml), {SECONDS:g} s at {RATE} Hz, "
        f"algorithmic latency {1000 * window / RATE:g} ms — {machine_line(args.threads)}"
    )
    rows = []
    base = medians["offline"]
    for name, seconds in medians.items():
        path_name, _, ms = name.partition(" ")
        latency = 1000 * window / RATE + (float(ms) if ms else 0.0)
        rtf = seconds / SECONDS
        is_stream = bool(ms)
        meets = (
            "yes"
            if is_stream and rtf <= 0.1 and latency <= 20
            else ("-" if not is_stream else "no")
        )
        rows.append(
            [
                "offline (whole signal)" if not ms else f"stream, {path_name}",
                f"{ms} ms" if ms else f"{SECONDS:g} s",
                f"{latency:.0f} ms" if ms else "whole signal",
                f"{rtf:.3f}",
                f"{seconds / base:.2f}x",
                meets,
            ]
        )
    print_table(
        ["path", "block", "latency", "real-time factor", "vs offline", "RTF <= 0.1 and <= 20 ms"],
        rows,
    )
    if note:
        print(f"\n{note}")


if __name__ == "__main__":
    main()
