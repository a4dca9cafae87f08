"""Learned analysis/synthesis filterbanks shared by the time-domain masking models."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Encoder(nn.Module):
    """Conv1d analysis filterbank (kernel L, hop L/2) + ReLU: ``[B, T] -> [B, N, frames]``.

    No bias, as in Conv-TasNet and SepFormer, so that SpeechBrain/Asteroid weights load as they are.
    """

    def __init__(self, channels: int, kernel_size: int, stride: int | None = None) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride or kernel_size // 2
        self.conv = nn.Conv1d(1, channels, kernel_size, stride=self.stride, bias=False)

    def forward(self, mix: Tensor) -> Tensor:
        return torch.relu(self.conv(mix.unsqueeze(1)))


class Decoder(nn.Module):
    """Transposed-conv synthesis filterbank: ``[B, N, frames] -> [B, T']``, overlap-add built in."""

    def __init__(self, channels: int, kernel_size: int, stride: int | None = None) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride or kernel_size // 2
        self.deconv = nn.ConvTranspose1d(channels, 1, kernel_size, stride=self.stride, bias=False)

    def forward(self, frames: Tensor) -> Tensor:
        return self.deconv(frames).squeeze(1)
