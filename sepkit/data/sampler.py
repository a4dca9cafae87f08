"""A sampler whose order is a pure function of (seed, epoch, rank) and that can start mid-epoch.

This is what makes resume exact: after a crash the trainer restores the epoch and the number of
batches already consumed, and the sampler yields the same remaining indices the uninterrupted run
would have. Under DDP each rank takes a strided slice of one shared permutation (as
``DistributedSampler`` does), padded by wrapping so all ranks take the same number of steps.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler[int]):
    def __init__(
        self,
        num_examples: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if num_examples <= 0:
            raise ValueError("ResumableSampler: the dataset is empty")
        if not 0 <= rank < world_size:
            raise ValueError(f"ResumableSampler: rank {rank} outside world of {world_size}")
        self.num_examples = num_examples
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.start = 0

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` indices of this rank's order for the current epoch only."""
        self.start = start

    def _rank_indices(self) -> list[int]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.num_examples, generator=gen).tolist()
        else:
            order = list(range(self.num_examples))
        per_rank = -(-self.num_examples // self.world_size)
        total = per_rank * self.world_size
        order = (order * (total // len(order) + 1))[:total]
        return order[self.rank : total : self.world_size]

    def __iter__(self) -> Iterator[int]:
        indices = self._rank_indices()[self.start :]
        self.start = 0  # a restart offset applies to one pass only
        return iter(indices)

    def __len__(self) -> int:
        return -(-self.num_examples // self.world_size)
