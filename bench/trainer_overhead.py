"""Trainer overhead: ``Trainer.fit_batch`` against a bare hand-written PyTorch step, same model.

The bare step does the minimum any separation loop must: forward, PIT SI-SNR mean, backward,
clip_grad_norm_, Adam step, zero_grad. ``fit_batch`` adds the threshold mask, the finiteness
check with its one host sync, the skip logic and a telemetry row. Both run on identical copies
of the model and batch, interleaved, and the table gives the ratio (goal <= 1.03).

    python bench/trainer_overhead.py [--threads 1] [--quick] [--model convtasnet --preset small]
"""

from __future__ import annotations

import copy
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import base_parser, interleaved_medians, machine_line, print_table

from sepkit.data import Batch
from sepkit.losses import pit_si_snr
from sepkit.models import build_model
from sepkit.training import TrainConfig
from sepkit.training.trainer import Trainer


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--model", default="convtasnet")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 40)
    torch.manual_seed(0)
    model = build_model({"name": args.model, "preset": args.preset})
    bare_model = copy.deepcopy(model)
    length = int(args.seconds * 8000)
    sources = torch.randn(args.batch, 2, length) * 0.1
    batch = Batch(sources.sum(1), sources, [f"u{i}" for i in range(args.batch)])

    bare_opt = torch.optim.Adam(bare_model.parameters(), lr=1e-4)

    def bare_step() -> float:
        est = bare_model(batch.mix)
        loss = pit_si_snr(est, batch.sources)[0].mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(bare_model.parameters(), 5.0)
        bare_opt.step()
        bare_opt.zero_grad(set_to_none=True)
        return loss.item()

    with (
        tempfile.TemporaryDirectory() as run_dir,
        Trainer(
            model,
            torch.optim.Adam(model.parameters(), lr=1e-4),
            TrainConfig(progress_bar=False, log_every=50),
            run_dir=run_dir,
            device="cpu",
        ) as trainer,
    ):
        medians = interleaved_medians(
            {"bare": bare_step, "sepkit": lambda: trainer.fit_batch(batch)},
            repeats,
            warmup=1 if args.quick else 3,
        )
    ratio = medians["sepkit"] / medians["bare"]
    print(
        f"Training step, {args.model}/{args.preset}, batch {args.batch} x {args.seconds:g} s at "
        f"8 kHz — {machine_line(args.threads)}"
    )
    print_table(
        ["bare PyTorch ms", "sepkit fit_batch ms", "ratio sepkit/bare"],
        [[f"{medians['bare'] * 1e3:.1f}", f"{medians['sepkit'] * 1e3:.1f}", f"{ratio:.3f}"]],
    )


if __name__ == "__main__":
    main()
