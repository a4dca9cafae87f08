"""Row 2: one full SepFormer training step, sepkit ``Trainer.fit_batch`` vs SpeechBrain's recipe.

The step is forward, PIT SI-SNR loss, threshold filter of easy examples, backward, gradient
clipping and Adam, on the same SepFormer configuration with the same initial weights and the
same batch. SpeechBrain's side is a ``speechbrain.Brain`` subclass doing what the WSJ0-2mix
recipe's ``Separation.fit_batch`` does, driven like ``Brain._fit_train`` (see
``bench/sepformer_pair.py``). The first step's losses of both sides are checked to agree.
Steps alternate sepkit / SpeechBrain; medians and the ratio sepkit / SpeechBrain (goal <= 0.75).

    python bench/train_step.py [--threads 1] [--quick] [--preset small] [--batches 1,4]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import base_parser, interleaved_medians, machine_line, print_table
from sepformer_pair import (
    build_pair,
    make_batch,
    sepkit_trainer,
    speechbrain_batch,
    speechbrain_brain,
    speechbrain_train_step,
)

GOAL = 0.75


def measure(preset: str, size: int, seconds: float, repeats: int, quick: bool) -> list[str]:
    """One table row: both toolkits from the same weights, on the same batch, alternating."""
    mods, model = build_pair(preset)
    brain = speechbrain_brain(mods)
    batch = make_batch(size, seconds)
    sb_batch = speechbrain_batch(batch.mix, batch.sources)
    with (
        tempfile.TemporaryDirectory(prefix="sepkit-bench-") as run_dir,
        sepkit_trainer(model, run_dir) as trainer,
    ):
        first = trainer.fit_batch(batch), speechbrain_train_step(brain, sb_batch)
        if abs(first[0] - first[1]) > 1e-3 * max(1.0, abs(first[1])):
            raise SystemExit(f"first-step losses differ: sepkit {first[0]}, SB {first[1]}")
        medians = interleaved_medians(
            {
                "sepkit": lambda: trainer.fit_batch(batch),
                "speechbrain": lambda: speechbrain_train_step(brain, sb_batch),
            },
            repeats,
            warmup=1 if quick else 2,
        )
    ratio = medians["sepkit"] / medians["speechbrain"]
    return [
        f"{size} x {seconds:g} s",
        f"{medians['sepkit'] * 1e3:.0f}",
        f"{medians['speechbrain'] * 1e3:.0f}",
        f"{ratio:.2f}x",
        "yes" if ratio <= GOAL else "no",
        f"{abs(first[0] - first[1]):.1e}",
    ]


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", help="SepFormer preset (small on CPU)")
    parser.add_argument("--batches", default="1,4", help="batch sizes, comma-separated")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per example (8 kHz)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (2 if args.quick else 10)
    batches = [1] if args.quick else [int(b) for b in args.batches.split(",")]
    seconds = 0.5 if args.quick else args.seconds
    rows = [measure(args.preset, size, seconds, repeats, args.quick) for size in batches]
    print(
        f"Training step (fwd, PIT loss, threshold, bwd, clip, Adam), SepFormer '{args.preset}', "
        f"8 kHz, median of {repeats} alternating steps — {machine_line(args.threads)}"
    )
    print()
    print_table(
        [
            "batch",
            "sepkit ms",
            "SpeechBrain ms",
            "sepkit/SB",
            f"<= {GOAL}x",
            "first-step loss diff (dB)",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
