"""Encoder -> mask network -> decoder: the composition shared by Conv-TasNet, DPRNN, SepFormer."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from sepkit.models.filterbank import Decoder, Encoder


class MaskingSeparator(nn.Module):
    """``mix [B, T] -> est [B, C, T]`` for any T.

    The mask network maps encoded frames ``[B, N, F]`` to masks ``[B, C, N, F]``.

    With ``pad_input`` the mixture is zero-padded so that the analysis windows cover every sample
    (the output is trimmed back). Without it, trailing samples that do not fill a window are
    dropped and the output is zero-padded, which is what SpeechBrain's SepFormer does:
    ``pad_input=False`` keeps imported models numerically equal to their SpeechBrain originals.
    Inputs shorter than one window are padded to one window in both modes (SpeechBrain fails).

    With ``full_overlap`` (the causal models) the mixture gets ``L - hop`` zeros before it and at
    least as many after it, so that every sample lies under ``L / hop`` frames, the first and
    last ones included. That is what a stateful stream computes when it starts from zeroed
    buffers and is flushed with zeros at the end (:mod:`sepkit.models.convtasnet_stream`), so
    the stream reproduces this forward exactly.
    """

    def __init__(
        self,
        encoder: Encoder,
        masknet: nn.Module,
        decoder: Decoder,
        num_spks: int,
        pad_input: bool = True,
        full_overlap: bool = False,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.masknet = masknet
        self.decoder = decoder
        self.num_spks = num_spks
        self.pad_input = pad_input
        self.full_overlap = full_overlap

    @property
    def lead(self) -> int:
        """Zeros put before the mixture: ``L - hop`` with ``full_overlap``, else none."""
        return self.encoder.kernel_size - self.encoder.stride if self.full_overlap else 0

    def _padding(self, length: int) -> int:
        k, s = self.encoder.kernel_size, self.encoder.stride
        if length <= k:
            return k - length
        return (-(length - k)) % s

    def forward(self, mix: Tensor) -> Tensor:
        if mix.dim() != 2:
            raise ValueError(f"expected mix [B, T], got shape {tuple(mix.shape)}")
        batch, length = mix.shape
        lead = self.lead
        if lead:
            tail = lead + (-length) % self.encoder.stride
            mix = F.pad(mix, (lead, tail))
        elif self.pad_input or length < self.encoder.kernel_size:
            mix = F.pad(mix, (0, self._padding(length)))
        frames = self.encoder(mix)  # [B, N, F]
        masks = self.masknet(frames)  # [B, C, N, F]
        masked = frames.unsqueeze(1) * masks
        est = self.decoder(masked.flatten(0, 1)).view(batch, self.num_spks, -1)
        if lead:
            return est[..., lead : lead + length]
        out_len = est.shape[-1]
        if out_len >= length:
            return est[..., :length]
        return F.pad(est, (0, length - out_len))
