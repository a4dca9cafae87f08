"""A deliberately small masking separator for trainer tests (the trainer is model-agnostic)."""

from __future__ import annotations

import torch
from torch import nn


class TinySeparator(nn.Module):
    def __init__(self, num_spks: int = 2, channels: int = 16, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_spks = num_spks
        self.channels = channels
        self.enc = nn.Conv1d(1, channels, 16, 8, bias=False)
        self.mask = nn.Conv1d(channels, channels * num_spks, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.dec = nn.ConvTranspose1d(channels, 1, 16, 8, bias=False)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        batch, length = mix.shape
        frames = torch.relu(self.enc(mix.unsqueeze(1)))
        masks = torch.sigmoid(self.drop(self.mask(frames)))
        masks = masks.view(batch, self.num_spks, self.channels, -1)
        est = self.dec((frames.unsqueeze(1) * masks).flatten(0, 1)).view(batch, self.num_spks, -1)
        est = nn.functional.pad(est, (0, max(0, length - est.shape[-1])))
        return est[..., :length]
