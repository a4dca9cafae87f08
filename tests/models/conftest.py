"""Shared helpers for model tests: one thread, tiny configurations, a synthetic separation batch."""

from __future__ import annotations

import math

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    # Several engineers share two cores: every model test runs single-threaded.
    torch.set_num_threads(1)


def synthetic_batch(
    batch: int, num_spks: int, length: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mix [B, T], sources [B, C, T])``: sums of a few amplitude-modulated sinusoids per source.

    Sources differ in pitch range so a small model can learn to tell them apart in a few steps.
    """
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(length, dtype=torch.float32) / 8000.0
    sources = torch.zeros(batch, num_spks, length)
    for b in range(batch):
        for c in range(num_spks):
            base = 150.0 * (c + 1) * (1.0 + 0.2 * torch.rand(1, generator=gen).item())
            for h in range(1, 4):
                phase = 2 * math.pi * torch.rand(1, generator=gen).item()
                env = 0.6 + 0.4 * torch.sin(2 * math.pi * (1.5 + c) * t + phase)
                sources[b, c] += env * torch.sin(2 * math.pi * base * h * t + phase) / h
    return sources.sum(1), sources
