"""SepFormer forward+backward speed: sepkit vs SpeechBrain, identical configuration, one process.

    .venv/bin/python bench/model_speed.py [--threads N] [--quick] [--preset small]

Both models get the same weights (SpeechBrain's, imported into sepkit), so the comparison also
checks that the outputs agree. Timings alternate sepkit / SpeechBrain step by step (the order
flips every round) and report medians, so background load hits both sides alike; only the ratio
is meaningful on a shared machine. The ``pair IQR`` column is the interquartile range of the
per-round ratios: how far one round's ratio moves on this machine. Peak RSS is measured in a
fresh child process per side (``resource.getrusage``), each importing the same modules, running
the same steps.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
import sepformer_pair
from common import proc_status_kib, reset_peak_rss

SAMPLE_RATE = 8000
SECONDS = 2.0


def build_pair(preset: str) -> tuple[Any, torch.nn.Module]:
    """(SpeechBrain modules, sepkit model) with identical weights (see sepformer_pair.py)."""
    return sepformer_pair.build_pair(preset)


def speechbrain_forward(mods: Any, mix: torch.Tensor) -> torch.Tensor:
    """SpeechBrain's separation pipeline, ``[B, C, T]`` like sepkit's output."""
    return sepformer_pair.speechbrain_separate(mods, mix).permute(0, 2, 1)


def step(side: str, mods: Any, model: torch.nn.Module, mix: torch.Tensor) -> float:
    """One forward+backward (train mode); returns seconds."""
    start = time.perf_counter()
    est = model(mix) if side == "sepkit" else speechbrain_forward(mods, mix)
    est.pow(2).mean().backward()
    return time.perf_counter() - start


def zero_grads(mods: Any, model: torch.nn.Module) -> None:
    for module in (*mods.values(), model):
        module.zero_grad(set_to_none=True)


def child(side: str, preset: str, batch: int, steps: int) -> None:
    """Peak-RSS probe: build both (same imports and weights), then run ``side`` only.

    Prints the RSS before the first step and the peak during the steps; where the peak mark
    cannot be reset, the peak is ``getrusage``'s whole-process maximum.
    """
    mods, model = build_pair(preset)
    mix = torch.randn(batch, int(SECONDS * SAMPLE_RATE))
    base = proc_status_kib("VmRSS") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reset = reset_peak_rss()
    for _ in range(steps):
        step(side, mods, model, mix)
        zero_grads(mods, model)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if reset:
        peak = proc_status_kib("VmHWM") or peak
    print(json.dumps({"base_kib": base, "peak_kib": peak}))


def peak_rss(side: str, preset: str, batch: int, threads: int) -> dict[str, int]:
    cmd = [sys.executable, __file__, "--child", side, "--preset", preset]
    cmd += ["--batch", str(batch), "--threads", str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result: dict[str, int] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batches", default="1,2")
    parser.add_argument("--child", choices=["sepkit", "speechbrain"], help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        child(args.child, args.preset, args.batch, steps=3)
        return 0

    mods, model = build_pair(args.preset)
    for module in (*mods.values(), model):
        module.train()
    reps = 2 if args.quick else 15
    if args.quick:
        args.batches = "1"
    print(
        f"SepFormer '{args.preset}', forward+backward, {SECONDS:g} s at {SAMPLE_RATE} Hz, "
        f"{args.threads} thread(s), median of {reps} alternating steps"
    )
    header = f"{'batch':>5} {'sepkit ms':>10} {'SB ms':>9} {'ratio':>6} {'pair IQR':>10}"
    header += f" {'max|diff|':>10}"
    header += f" {'sepkit peak RSS MiB':>20} {'SB peak RSS MiB':>16}"
    print(header)
    for batch in (int(b) for b in args.batches.split(",")):
        mix = torch.randn(
            batch, int(SECONDS * SAMPLE_RATE), generator=torch.Generator().manual_seed(1)
        )
        with torch.no_grad():
            diff = (model(mix) - speechbrain_forward(mods, mix)).abs().max().item()
        times: dict[str, list[float]] = {"sepkit": [], "speechbrain": []}
        for side in ("sepkit", "speechbrain"):  # warm-up
            step(side, mods, model, mix)
        zero_grads(mods, model)
        for rep in range(reps):
            for side in ("sepkit", "speechbrain")[:: 1 if rep % 2 else -1]:
                times[side].append(step(side, mods, model, mix))
                zero_grads(mods, model)
        ours = statistics.median(times["sepkit"])
        theirs = statistics.median(times["speechbrain"])
        pairs = sorted(a / b for a, b in zip(times["sepkit"], times["speechbrain"], strict=True))
        spread = f"{pairs[len(pairs) // 4]:.2f}-{pairs[(3 * len(pairs)) // 4]:.2f}"
        rss = {s: peak_rss(s, args.preset, batch, args.threads) for s in times}
        mib = {s: f"{r['peak_kib'] / 1024:.0f} (+{(r['peak_kib'] - r['base_kib']) / 1024:.0f})"
               for s, r in rss.items()}  # fmt: skip
        print(f"{batch:>5} {ours * 1e3:>10.1f} {theirs * 1e3:>9.1f} {ours / theirs:>6.2f} "
              f"{spread:>10} {diff:>10.1e} {mib['sepkit']:>20} {mib['speechbrain']:>16}")  # fmt: skip
    print("peak RSS: whole process (increase over the state before the first step)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
