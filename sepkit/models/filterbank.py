"""Learned analysis/synthesis filterbanks shared by the time-domain masking models."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sepkit.models.fast_path import cpu_fast_path, fast_conv_ops_enabled


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
    """Transposed-conv synthesis filterbank: ``[B, N, frames] -> [B, T']``, overlap-add built in.

    On CPU float32, when the hop divides the filter length (every built-in model: hop L/2), it
    is computed as one matrix product (frames -> windows) and an overlap-add of ``L / hop``
    shifted copies: the same numbers as ``ConvTranspose1d``, whose CPU kernel is slow for this
    one-output-channel shape (docs/benchmarks.md). The parameter is the transposed
    convolution's, so weights load as before. ``SEPKIT_FAST_CONV_OPS=0`` turns it off.
    """

    def __init__(self, channels: int, kernel_size: int, stride: int | None = None) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride or kernel_size // 2
        self.deconv = nn.ConvTranspose1d(channels, 1, kernel_size, stride=self.stride, bias=False)

    def forward(self, frames: Tensor) -> Tensor:
        fast = fast_conv_ops_enabled() and cpu_fast_path(frames, self.deconv.weight)
        if fast and self.kernel_size % self.stride == 0:
            return self._overlap_add(frames)
        return self.deconv(frames).squeeze(1)

    def _overlap_add(self, frames: Tensor) -> Tensor:
        hop, shifts = self.stride, self.kernel_size // self.stride
        # [B, N, F] x [N, L] -> one window per frame, split into hop-long pieces: [B, F, k, hop]
        windows = torch.matmul(frames.transpose(1, 2), self.deconv.weight.squeeze(1))
        pieces = windows.unflatten(-1, (shifts, hop))
        out = F.pad(pieces[:, :, 0], (0, 0, 0, shifts - 1))
        for k in range(1, shifts):  # piece k of frame f lands at hop-block f + k
            out = out + F.pad(pieces[:, :, k], (0, 0, k, shifts - 1 - k))
        return out.flatten(1)
