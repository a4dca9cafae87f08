"""Reverberant mixing (issue 22): simulating a room per example vs drawing from a RIR pool, against
the demo model's training step.

One example = 2 sources, a 1 s crop at 8 kHz, WHAMR!-like rooms (``RoomConfig()`` defaults:
RT60 0.2-1.0 s, the image method up to the order that covers the whole decay), its reverberant
sources and direct-path targets (two FFT convolutions). Candidates, interleaved, one call each per
round, in one process and one thread:

- *simulate per example*: a new room from the example's generator, simulated, then convolved;
- *pool draw*: a room of a pre-simulated :class:`sepkit.data.rooms.RirPool`, then convolved;
- *training step*: forward + PIT SI-SNR + backward of the model of ``recipes/demo.yaml`` on a
  batch of 4 x 1 s (what 4 such examples feed).

The simulation time depends on the drawn RT60 (image count grows with its cube), so the table gives
the mean (what throughput sees) next to the median and the 90th percentile. "headroom" = step time
/ (4 x mean example time): how many times faster one process makes batches than the step uses
them (>= 3 is comfortable with a data-loader worker or two).

    python bench/room_speed.py [--threads 1] [--quick] [--repeats N] [--pool 32]
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import base_parser, machine_line, print_table

from sepkit.data.augment import example_rng
from sepkit.data.rooms import RirPool, RoomConfig, apply_room, simulate

RATE = 8000
CROP = 8000  # 1 s, as the demo recipe
BATCH = 4
SOURCES = 2
STREAM_ROOM = 9  # a stream of our own for this script's per-example generators
RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "demo.yaml"


def training_step() -> Callable[[], object]:
    """Forward + loss + backward of the demo recipe's model on one batch (no optimiser)."""
    from sepkit.losses import pit_si_snr
    from sepkit.models import build_model
    from sepkit.recipe import load_recipe

    recipe = load_recipe(RECIPE)
    model = build_model(recipe.model, recipe.data.sample_rate).train()
    sources = 0.1 * torch.randn(BATCH, SOURCES, CROP, generator=torch.Generator().manual_seed(0))
    mix = sources.sum(1)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        loss, _ = pit_si_snr(model(mix), sources)
        loss.mean().backward()

    return step


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=None, help="rooms in the pool (default 32)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (5 if args.quick else 30)
    pool_size = args.pool or (8 if args.quick else 32)
    cfg = RoomConfig(sample_rate=RATE)
    cfg.validate()
    dry = 0.1 * np.random.default_rng(0).standard_normal((SOURCES, CROP)).astype(np.float32)

    counter = iter(range(10**9))

    def per_example() -> object:
        responses = simulate(example_rng(0, 0, next(counter), STREAM_ROOM), cfg, SOURCES)
        return apply_room(dry, responses)

    start = time.perf_counter()
    pool = RirPool(cfg, pool_size, SOURCES, seed=0, positions=4).fill()
    fill_s = time.perf_counter() - start
    draws = iter(range(10**9))

    def from_pool() -> object:
        return apply_room(dry, pool.draw(example_rng(0, 1, next(draws), STREAM_ROOM)))

    candidates: dict[str, Callable[[], object]] = {
        "simulate per example": per_example,
        f"pool draw ({pool_size} rooms x 4 positions)": from_pool,
    }
    step_name = "training step (demo Conv-TasNet, batch 4 x 1 s)"
    candidates[step_name] = training_step()
    for fn in candidates.values():  # warm-up: pyroomacoustics' first call, torch's allocator
        fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    step = statistics.median(times.pop(step_name)) if step_name in times else None
    rows = []
    for name, values in times.items():
        mean = statistics.fmean(values)
        p90 = float(np.percentile(values, 90))
        headroom = f"{step / (BATCH * mean):.2g}x" if step else "-"
        rows.append(
            [
                name,
                f"{mean * 1e3:.1f}",
                f"{statistics.median(values) * 1e3:.1f}",
                f"{p90 * 1e3:.1f}",
                f"{1 / mean:.1f}",
                headroom,
            ]
        )
    if step is not None:
        rows.append([step_name, f"{step * 1e3:.1f}", "-", "-", f"{BATCH / step:.1f}", "-"])
    print(
        f"Reverberant examples ({SOURCES} sources, {CROP / RATE:g} s at {RATE} Hz, RT60 "
        f"{cfg.rt60[0]:g}-{cfg.rt60[1]:g} s, target {cfg.target}), {repeats} interleaved rounds "
        f"— {machine_line(args.threads)}"
    )
    print()
    print_table(
        ["candidate", "mean ms", "median ms", "p90 ms", "examples / s", "headroom vs step"], rows
    )
    print(
        f"\nFilling the pool: {fill_s:.1f} s for {pool_size} rooms "
        f"({fill_s / pool_size * 1e3:.0f} ms per room of 4 positions), once per run or cached "
        "with RirPool.save / RirPool.load."
    )


if __name__ == "__main__":
    main()
