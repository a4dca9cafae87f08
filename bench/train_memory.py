"""Row 6: peak RSS of a SepFormer training step, sepkit ``Trainer.fit_batch`` vs SpeechBrain's recipe.

Each side runs in a fresh child process (the same modules and hyper-parameters as row 2, see
``bench/sepformer_pair.py``): it builds its model and optimiser, runs a few training steps and
reports ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (the whole process: Python, torch, the
toolkit's imports, weights, and the step). On Linux the kernel's peak mark is reset just before
the first step (``/proc/self/clear_refs``), so the script also gives the step's own peak above
the RSS it started from: activations kept for backward, gradients, Adam's moments.

    python bench/train_memory.py [--threads 1] [--quick] [--batches 1,4]
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import base_parser, machine_line, print_table, proc_status_kib, reset_peak_rss

STEPS = 3


def child(side: str, preset: str, batch: int, seconds: float) -> None:
    from sepformer_pair import (
        make_batch,
        sepformer_config,
        sepkit_model,
        sepkit_trainer,
        speechbrain_batch,
        speechbrain_brain,
        speechbrain_modules,
        speechbrain_train_step,
    )

    torch.manual_seed(0)
    data = make_batch(batch, seconds)
    with tempfile.TemporaryDirectory(prefix="sepkit-mem-") as run_dir, ExitStack() as closing:
        if side == "sepkit":
            trainer = closing.enter_context(sepkit_trainer(sepkit_model(preset), run_dir))

            def step() -> object:
                return trainer.fit_batch(data)
        else:
            brain = speechbrain_brain(speechbrain_modules(sepformer_config(preset)))
            sb_batch = speechbrain_batch(data.mix, data.sources)

            def step() -> object:
                return speechbrain_train_step(brain, sb_batch)

        base = proc_status_kib("VmRSS") or 0
        reset = reset_peak_rss()
        for _ in range(STEPS):
            step()
        peak_step = proc_status_kib("VmHWM") if reset else None
    whole = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"whole_kib": whole, "base_kib": base, "step_peak_kib": peak_step}))


def run_child(side: str, preset: str, batch: int, seconds: float, threads: int) -> dict[str, int]:
    cmd = [sys.executable, __file__, "--child", side, "--preset", preset, "--batch", str(batch)]
    cmd += ["--seconds", str(seconds), "--threads", str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result: dict[str, int] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--child", choices=["sepkit", "speechbrain"], help="(internal)")
    parser.add_argument("--batch", type=int, default=1, help="(internal)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        child(args.child, args.preset, args.batch, args.seconds)
        return
    batches = [1] if args.quick else [int(b) for b in args.batches.split(",")]
    seconds = 0.5 if args.quick else args.seconds
    rows = []
    for size in batches:
        got = {
            s: run_child(s, args.preset, size, seconds, args.threads)
            for s in ("sepkit", "speechbrain")
        }
        mib = {s: {k: (v or 0) / 1024 for k, v in r.items()} for s, r in got.items()}
        step = {s: m["step_peak_kib"] - m["base_kib"] for s, m in mib.items()}
        rows.append(
            [
                f"{size} x {seconds:g} s",
                f"{mib['sepkit']['whole_kib']:.0f}",
                f"{mib['speechbrain']['whole_kib']:.0f}",
                f"{mib['sepkit']['whole_kib'] / mib['speechbrain']['whole_kib']:.2f}x",
                f"{step['sepkit']:.0f}",
                f"{step['speechbrain']:.0f}",
                f"{step['sepkit'] / step['speechbrain']:.2f}x"
                if step["speechbrain"] > 0
                else "n/a",
            ]
        )
    print(
        f"Peak RSS of {STEPS} SepFormer '{args.preset}' training steps, one child process per "
        f"side — {machine_line(args.threads)}"
    )
    print()
    print_table(
        [
            "batch",
            "sepkit MiB",
            "SpeechBrain MiB",
            "sepkit/SB",
            "sepkit step MiB",
            "SpeechBrain step MiB",
            "step sepkit/SB",
        ],
        rows,
    )
    print()
    print("MiB: whole-process peak (ru_maxrss); step MiB: peak during the steps above the RSS")
    print("before the first one (Linux peak-mark reset).")


if __name__ == "__main__":
    main()
