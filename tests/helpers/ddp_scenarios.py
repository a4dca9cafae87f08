"""DDP scenarios shared by the torchrun worker and the single-process reference in the tests.

Every rank takes an equal slice of one global batch, so 2 ranks x B/2 can be compared with
1 process x B on exactly the same examples and the same initial weights.
"""

from __future__ import annotations

import math

import torch

from helpers.tiny_model import TinySeparator
from sepkit.data import Batch
from sepkit.losses import pit_si_snr
from sepkit.training import TrainConfig

GLOBAL_BATCH = 4
STEPS = 4
NAN_STEP = 2  # the step at which rank 1 gets a NaN in "nan_on_rank1"


def make_model() -> TinySeparator:
    torch.manual_seed(0)
    return TinySeparator(num_spks=2, channels=16)


def make_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.05)


def global_batch(step: int, length: int = 1600) -> Batch:
    gen = torch.Generator().manual_seed(100 + step)
    t = torch.arange(length) / 8000
    freqs = 100 + 900 * torch.rand(GLOBAL_BATCH, 2, 1, generator=gen)
    sources = torch.sin(2 * math.pi * freqs * t) + 0.1 * torch.randn(
        GLOBAL_BATCH, 2, length, generator=gen
    )
    return Batch(sources.sum(1), sources, [f"s{step}-u{i}" for i in range(GLOBAL_BATCH)])


def easy_first_threshold() -> tuple[list[int], float]:
    """An order of the step-0 batch putting its two lowest-loss examples first (rank 0's slice),
    and a threshold between 2nd and 3rd lowest: rank 0's examples are all filtered, rank 1's kept."""
    model = make_model()
    batch = global_batch(0)
    with torch.no_grad():
        losses, _ = pit_si_snr(model(batch.mix), batch.sources)
    order = torch.argsort(losses).tolist()
    sorted_losses = losses[order]
    return order, float((sorted_losses[1] + sorted_losses[2]) / 2)


def reorder(batch: Batch, order: list[int]) -> Batch:
    return Batch(batch.mix[order], batch.sources[order], [batch.ids[i] for i in order])


def scenario(name: str) -> tuple[TrainConfig, list[Batch]]:
    """The config and the global batches of a scenario."""
    batches = [global_batch(step) for step in range(STEPS)]
    cfg = TrainConfig(progress_bar=False, clip_grad_norm=5.0)
    if name == "nan_on_rank1":
        bad = batches[NAN_STEP]
        bad.mix[GLOBAL_BATCH // 2 + 1, 10] = math.nan  # an example of rank 1's slice
    elif name == "rank0_all_filtered":
        order, threshold = easy_first_threshold()
        batches = [reorder(batches[0], order)]
        cfg = TrainConfig(progress_bar=False, clip_grad_norm=-1.0, threshold=threshold)
    elif name == "grad_accumulation":
        cfg = TrainConfig(progress_bar=False, clip_grad_norm=5.0, grad_accumulation=2)
    elif name != "same_as_single":
        raise ValueError(f"unknown scenario {name}")
    return cfg, batches


def rank_slice(batch: Batch, rank: int, world: int) -> Batch:
    per = len(batch) // world
    sl = slice(rank * per, (rank + 1) * per)
    return Batch(batch.mix[sl], batch.sources[sl], batch.ids[sl])
