"""Dual-path processing (Luo et al. 2020), shared by DPRNN and SepFormer.

Frames are cut into chunks of ``K`` frames with hop ``K/2``; an *intra* model runs along each
chunk (local context) and an *inter* model across chunks at each in-chunk position (global
context); the chunks are then overlap-added back into frames.

Everything is kept channels-last (``[B, S, K, D]``): the intra sequences are then a free view,
every projection is a plain ``Linear`` on the last axis, and only the inter pass needs one
transpose copy each way. The chunking, padding and mask head reproduce SpeechBrain's
``Dual_Path_Model`` exactly (including its choice of padding), so its checkpoints load unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sepkit.models.conv_ops import PReLU


def chunk_gap(length: int, chunk_size: int) -> int:
    """Frames of zeros appended after ``length`` frames before chunking (SpeechBrain's rule).

    Note that it is a full ``chunk_size`` (never 0) when the hop already divides evenly; imported
    models only match their originals with that same padding.
    """
    hop = chunk_size // 2
    return chunk_size - (hop + length % chunk_size) % chunk_size


def segment(x: Tensor, chunk_size: int) -> tuple[Tensor, int]:
    """``[B, L, D] -> ([B, S, K, D], gap)``: chunks of ``K`` frames, hop ``K/2``, zero-padded by
    ``K/2`` at both ends (so every frame is covered by exactly two chunks) plus ``gap``."""
    hop = chunk_size // 2
    gap = chunk_gap(x.shape[1], chunk_size)
    padded = F.pad(x, (0, 0, hop, gap + hop))
    return padded.unfold(1, chunk_size, hop).transpose(2, 3).contiguous(), gap


def overlap_add(chunks: Tensor, length: int) -> Tensor:
    """Inverse of :func:`segment`: ``[B, S, K, E] -> [B, length, E]``, summing the two chunks
    that cover each frame."""
    batch, num_chunks, chunk_size, features = chunks.shape
    hop = chunk_size // 2
    # Block m of the padded signal = first half of chunk m + second half of chunk m - 1.
    first = F.pad(chunks[:, :, :hop], (0, 0, 0, 0, 0, 1))
    second = F.pad(chunks[:, :, hop:], (0, 0, 0, 0, 1, 0))
    blocks = (first + second).view(batch, (num_chunks + 1) * hop, features)
    return blocks[:, hop : hop + length]


class GlobalNorm(nn.Module):
    """gLN over every axis but the batch for channels-last tensors (``[B, ..., D]``).

    Numerically ``GroupNorm(1, D)`` applied to the channels-first tensor (what SpeechBrain's
    ``norm: ln`` is), without transposing to channels-first and back.
    """

    def __init__(self, channels: int, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        normed = F.layer_norm(x, x.shape[1:], eps=self.eps)
        return torch.addcmul(self.bias, normed, self.weight)


class DualPathBlock(nn.Module):
    """One intra pass and one inter pass, each followed by an optional linear layer, gLN and a
    residual sum (the intra residual is optional, as in SpeechBrain's ``skip_around_intra``).

    ``intra`` and ``inter`` map ``[batch, time, D] -> [batch, time, out_features]``; without the
    linear layer their ``out_features`` must equal ``D``.
    """

    def __init__(
        self,
        intra: nn.Module,
        inter: nn.Module,
        d_model: int,
        linear: bool,
        skip_around_intra: bool = True,
    ) -> None:
        super().__init__()
        self.intra = intra
        self.inter = inter
        self.skip_around_intra = skip_around_intra
        intra_out = int(getattr(intra, "out_features", d_model))
        inter_out = int(getattr(inter, "out_features", d_model))
        if not linear and (intra_out != d_model or inter_out != d_model):
            raise ValueError("intra/inter models change the width: a linear layer is needed")
        self.intra_linear = nn.Linear(intra_out, d_model) if linear else None
        self.inter_linear = nn.Linear(inter_out, d_model) if linear else None
        self.intra_norm = GlobalNorm(d_model)
        self.inter_norm = GlobalNorm(d_model)

    def forward(self, x: Tensor) -> Tensor:
        batch, num_chunks, chunk_size, dim = x.shape
        intra = self.intra(x.reshape(batch * num_chunks, chunk_size, dim))
        if self.intra_linear is not None:
            intra = self.intra_linear(intra)
        intra = self.intra_norm(intra.view(batch, num_chunks, chunk_size, dim))
        if self.skip_around_intra:
            intra = intra + x
        inter = self.inter(intra.transpose(1, 2).reshape(batch * chunk_size, num_chunks, dim))
        if self.inter_linear is not None:
            inter = self.inter_linear(inter)
        inter = self.inter_norm(inter.view(batch, chunk_size, num_chunks, dim))
        return intra + inter.transpose(1, 2)


class DualPathMaskNet(nn.Module):
    """Encoded frames ``[B, N, F]`` -> masks ``[B, C, N, F]`` (SpeechBrain's mask head).

    gLN, projection to ``d_model``, chunking, the dual-path blocks, PReLU, projection to
    ``C * d_model``, overlap-add, a tanh output gated by a sigmoid, projection back to ``N`` and
    ReLU masks.
    """

    def __init__(
        self,
        in_channels: int,
        d_model: int,
        chunk_size: int,
        blocks: Sequence[DualPathBlock],
        num_spks: int,
    ) -> None:
        super().__init__()
        if chunk_size < 2 or chunk_size % 2:
            raise ValueError(f"chunk_size must be even and >= 2 (hop = half), got {chunk_size}")
        self.chunk_size = chunk_size
        self.num_spks = num_spks
        self.in_norm = nn.GroupNorm(1, in_channels, eps=1e-8)
        self.in_proj = nn.Linear(in_channels, d_model, bias=False)
        self.blocks = nn.ModuleList(blocks)
        self.prelu = PReLU()
        self.head = nn.Linear(d_model, d_model * num_spks)
        self.output = nn.Linear(d_model, d_model)
        self.output_gate = nn.Linear(d_model, d_model)
        self.end_proj = nn.Linear(d_model, in_channels, bias=False)

    def forward(self, frames: Tensor) -> Tensor:
        batch, _, length = frames.shape
        x = self.in_proj(self.in_norm(frames).transpose(1, 2))  # [B, F, D]
        chunks, _ = segment(x, self.chunk_size)
        for block in self.blocks:
            chunks = block(chunks)
        # The head is affine and overlap-add linear, with every frame covered by exactly two
        # chunks: head(OLA(y)) with a doubled bias equals OLA(head(y)) (SpeechBrain's order) at
        # half the cost, on frames instead of chunk positions, and C times fewer channels to add.
        frames_d = overlap_add(self.prelu(chunks), length)  # [B, F, D]
        per_spk = F.linear(frames_d, self.head.weight, 2.0 * self.head.bias)
        y = per_spk.view(batch, length, self.num_spks, -1)
        y = torch.tanh(self.output(y)) * torch.sigmoid(self.output_gate(y))
        masks = torch.relu(self.end_proj(y))  # [B, F, C, N]
        return masks.permute(0, 2, 3, 1)
