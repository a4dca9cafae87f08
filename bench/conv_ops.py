"""Conv-TasNet on the CPU: sepkit's fast convolution paths against stock ATen ops.

Two identical copies of the demo's Conv-TasNet (the model of ``recipes/demo.yaml``, read from it)
take the same training step (forward, PIT SI-SNR, backward, Adam), one with the fast paths on
(``sepkit.models.conv_ops``' PReLU and depthwise convolution, the decoder's overlap-add) and one
with them off (``SEPKIT_FAST_CONV_OPS=0``: the stock ``F.prelu``, grouped ``F.conv1d`` and
``ConvTranspose1d``), interleaved step by step; the table gives the ratio.

    python bench/conv_ops.py [--threads 1] [--quick] [--batch 4]
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import base_parser, interleaved_medians, machine_line, print_table

from sepkit.losses import pit_si_snr
from sepkit.models import build_model
from sepkit.recipe import load_recipe

# Read, not copied: the benchmark follows the demo recipe when its model changes.
DEMO_MODEL = load_recipe(Path(__file__).parents[1] / "recipes" / "demo.yaml").model


def training_step(fast: bool, mix: torch.Tensor, sources: torch.Tensor) -> Callable[[], float]:
    torch.manual_seed(0)
    model = build_model(DEMO_MODEL)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> float:
        os.environ["SEPKIT_FAST_CONV_OPS"] = "1" if fast else "0"
        loss = pit_si_snr(model(mix), sources)[0].mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    return step


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 30)
    gen = torch.Generator().manual_seed(0)
    sources = torch.randn(args.batch, 2, int(args.seconds * 8000), generator=gen) * 0.1
    mix = sources.sum(1)
    medians = interleaved_medians(
        {"stock": training_step(False, mix, sources), "sepkit": training_step(True, mix, sources)},
        repeats,
        warmup=1 if args.quick else 3,
    )
    os.environ.pop("SEPKIT_FAST_CONV_OPS", None)
    print(
        f"Conv-TasNet (demo recipe: {DEMO_MODEL}) training step, batch {args.batch} x "
        f"{args.seconds:g} s at 8 kHz — {machine_line(args.threads)}"
    )
    ratio = medians["sepkit"] / medians["stock"]
    print_table(
        ["stock ATen ms", "sepkit conv_ops ms", "ratio sepkit/stock"],
        [[f"{medians['stock'] * 1e3:.1f}", f"{medians['sepkit'] * 1e3:.1f}", f"{ratio:.3f}"]],
    )


if __name__ == "__main__":
    main()
