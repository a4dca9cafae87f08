"""A user's own model and loss, written as a user would, outside sepkit: recipes name them by
dotted path (``helpers.user_code:...``; ``tests/`` is on the path)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class UserSeparator(nn.Module):
    """A small masking separator written from scratch (no sepkit parts): conv encoder, a 2-layer
    conv mask net, transposed-conv decoder."""

    def __init__(self, num_spks: int = 2, channels: int = 16, kernel: int = 16) -> None:
        super().__init__()
        self.num_spks, self.kernel = num_spks, kernel
        self.encoder = nn.Conv1d(1, channels, kernel, stride=kernel // 2, bias=False)
        self.masker = nn.Sequential(
            nn.Conv1d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv1d(channels, num_spks * channels, 1),
        )
        self.decoder = nn.ConvTranspose1d(channels, 1, kernel, stride=kernel // 2, bias=False)

    def forward(self, mix: Tensor) -> Tensor:
        batch, length = mix.shape
        hop = self.kernel // 2
        padded = nn.functional.pad(mix, (0, self.kernel + (-length) % hop))
        frames = torch.relu(self.encoder(padded.unsqueeze(1)))
        masks = torch.sigmoid(self.masker(frames)).view(batch, self.num_spks, -1, frames.shape[-1])
        masked = (frames.unsqueeze(1) * masks).flatten(0, 1)
        return self.decoder(masked).view(batch, self.num_spks, -1)[..., :length]


def negative_l1(est: Tensor, ref: Tensor, eps: float, lengths: Tensor | None) -> Tensor:
    """A pairwise score (higher is better): minus the mean absolute error, ``[B, C_ref, C_est]``."""
    return -(est.unsqueeze(1) - ref.unsqueeze(2)).abs().mean(-1)
