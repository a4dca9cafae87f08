"""Real training steps of the tiny model on synthetic tones, for the trainer's unit tests."""

from __future__ import annotations

import math

import torch

from helpers.tiny_model import TinySeparator
from sepkit.data import Batch
from sepkit.training import TrainConfig
from sepkit.training.trainer import Trainer


def make_batch(batch: int = 4, num: int = 2, length: int = 2000, seed: int = 0) -> Batch:
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(length) / 8000
    sources = []
    for _ in range(batch):
        freqs = 100 + 900 * torch.rand(num, 1, generator=gen)
        env = torch.rand(num, 1, generator=gen) + 0.2
        sources.append(
            env * torch.sin(2 * math.pi * freqs * t)
            + 0.05 * torch.randn(num, length, generator=gen)
        )
    src = torch.stack(sources)
    return Batch(mix=src.sum(1), sources=src, ids=[f"utt{i}" for i in range(batch)])


def make_trainer(optimizer: str = "adam", lr: float = 1e-3, **overrides) -> Trainer:
    torch.manual_seed(0)
    model = TinySeparator()
    opt = (
        torch.optim.SGD(model.parameters(), lr=lr)
        if optimizer == "sgd"
        else torch.optim.Adam(model.parameters(), lr=lr)
    )
    cfg = TrainConfig(progress_bar=False, **overrides)
    return Trainer(model, opt, cfg, device="cpu")
