"""How many intra-op threads should a training process use? Step time with 1 and 2 threads,
alternating in one process, alone and next to a competing CPU-bound process (the situation of a
data-loader worker or a corpus generator running beside training).

    python bench/threads.py [--quick] [--model convtasnet --preset small]
"""

from __future__ import annotations

import multiprocessing as mp
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import base_parser, interleaved_medians, machine_line, print_table

from sepkit.data import Batch
from sepkit.models import build_model
from sepkit.training import TrainConfig
from sepkit.training.trainer import Trainer


def burn(stop: mp.synchronize.Event) -> None:  # type: ignore[name-defined]
    x = 0
    while not stop.is_set():
        for i in range(100_000):
            x += i * i


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--model", default="convtasnet")
    parser.add_argument("--preset", default="small")
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 15)
    torch.manual_seed(0)
    model = build_model({"name": args.model, "preset": args.preset})
    trainer = Trainer(
        model,
        torch.optim.Adam(model.parameters(), 1e-4),
        TrainConfig(progress_bar=False),
        device="cpu",
    )
    sources = torch.randn(4, 2, 16000) * 0.1
    batch = Batch(sources.sum(1), sources)

    def step_with(threads: int):
        def run() -> None:
            torch.set_num_threads(threads)
            trainer.fit_batch(batch)

        return run

    rows = []
    for load in (False, True):
        stop = mp.Event()
        burner = mp.Process(target=burn, args=(stop,), daemon=True) if load else None
        if burner:
            burner.start()
        try:
            med = interleaved_medians(
                {"1": step_with(1), "2": step_with(2)}, repeats, warmup=1 if args.quick else 2
            )
        finally:
            stop.set()
            if burner:
                burner.join(timeout=5)
        rows.append(
            [
                "1 busy process beside" if load else "alone",
                f"{med['1'] * 1e3:.0f}",
                f"{med['2'] * 1e3:.0f}",
                f"{med['2'] / med['1']:.2f}",
            ]
        )
    print(f"Training step {args.model}/{args.preset}, 4 x 2 s at 8 kHz — {machine_line(0)}")
    print_table(["situation", "1 thread ms", "2 threads ms", "ratio 2/1"], rows)


if __name__ == "__main__":
    main()
