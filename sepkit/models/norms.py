"""Normalisations used by the mask networks, named as in the Conv-TasNet paper.

gLN is ``GroupNorm`` with one group: it normalises each example over channels *and* time with a
per-channel affine, which is exactly the paper's definition; using the fused kernel instead of
hand-written means/variances is both faster and what SpeechBrain's ``norm: ln`` builds, so weights
of dual-path models load unchanged.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

NormKind = Literal["gLN", "cLN"]


class GlobalLayerNorm(nn.GroupNorm):
    """gLN: statistics over all channels and frames of one example (``[B, N, ...]``)."""

    def __init__(self, channels: int, eps: float = 1e-8) -> None:
        super().__init__(1, channels, eps=eps)


class ChannelLayerNorm(nn.LayerNorm):
    """cLN: statistics over channels, per frame, so it stays causal (``[B, N, T]``)."""

    def __init__(self, channels: int, eps: float = 1e-8) -> None:
        super().__init__(channels, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        # Reduced along the channel axis in place, not through layer_norm on a transposed view:
        # its output and gradients would keep transposed strides, and the PReLU and depthwise
        # kernels around it (and their backwards) run several times slower on those.
        mean = x.mean(1, keepdim=True)
        centred = x - mean
        var = centred.square().mean(1, keepdim=True)
        shape = (-1,) + (1,) * (x.dim() - 2)
        return torch.addcmul(
            self.bias.view(shape), centred * torch.rsqrt(var + self.eps), self.weight.view(shape)
        )


def make_norm(kind: NormKind, channels: int) -> nn.Module:
    """Build the normalisation named ``kind`` for ``channels`` channels."""
    if kind == "gLN":
        return GlobalLayerNorm(channels)
    if kind == "cLN":
        return ChannelLayerNorm(channels)
    raise ValueError(f"norm: unknown kind {kind!r}; one of gLN, cLN")
