"""Transformer encoder used inside the dual-path models (SepFormer's IntraT and InterT).

Batch-first, attention through ``scaled_dot_product_attention`` (fused kernels, no attention
matrix kept for backward, no head-averaged weights computed), and parameter shapes equal to
``torch.nn.MultiheadAttention``'s packed in-projection, so that SpeechBrain weights map 1:1.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Activation = Literal["relu", "gelu"]


def sinusoidal_table(length: int, dim: int) -> Tensor:
    """``[length, dim]`` sin/cos positional table (Vaswani et al.), computed exactly as SpeechBrain
    computes its own so that imported models see bit-identical encodings."""
    if dim % 2:
        raise ValueError(f"sinusoidal positional encoding needs an even size, got {dim}")
    positions = torch.arange(0, length).unsqueeze(1).float()
    freqs = torch.exp(torch.arange(0, dim, 2).float() * -(math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(positions * freqs)
    table[:, 1::2] = torch.cos(positions * freqs)
    return table


class PositionalEncoding(nn.Module):
    """Adds the sinusoidal table; it grows on demand (no fixed maximum length) and is not saved."""

    table: Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.register_buffer("table", sinusoidal_table(256, dim), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        length = x.shape[-2]
        if length > self.table.shape[0]:
            self.table = sinusoidal_table(2 * length, self.dim).to(self.table.device)
        return x + self.table[:length].to(x.dtype)


class SelfAttention(nn.Module):
    """Multi-head self-attention ``[B, T, D] -> [B, T, D]`` via ``scaled_dot_product_attention``."""

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % nhead:
            raise ValueError(f"d_model ({d_model}) must be a multiple of nhead ({nhead})")
        self.nhead = nhead
        self.dropout = dropout
        self.in_proj = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        # Same initialisation as nn.MultiheadAttention, so training from scratch behaves alike.
        nn.init.xavier_uniform_(self.in_proj.weight)
        nn.init.zeros_(self.in_proj.bias)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        batch, length, dim = x.shape
        qkv = self.in_proj(x).view(batch, length, 3, self.nhead, dim // self.nhead)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, T, Dh]
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, dim))


class TransformerLayer(nn.Module):
    """Self-attention + feed-forward, each with a residual; LayerNorm before (pre-norm, as in the
    published SepFormer) or after each residual sum (post-norm)."""

    def __init__(
        self,
        d_model: int,
        nhead: int,
        d_ffn: int,
        dropout: float = 0.0,
        activation: Activation = "relu",
        norm_before: bool = True,
    ) -> None:
        super().__init__()
        self.norm_before = norm_before
        self.norm1 = nn.LayerNorm(d_model, eps=1e-6)
        self.attn = SelfAttention(d_model, nhead, dropout)
        self.norm2 = nn.LayerNorm(d_model, eps=1e-6)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, d_ffn),
            nn.ReLU() if activation == "relu" else nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(d_ffn, d_model),
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        if self.norm_before:
            x = x + self.dropout(self.attn(self.norm1(x)))
            return x + self.dropout(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.dropout(self.attn(x)))
        return self.norm2(x + self.dropout(self.ffn(x)))


class TransformerEncoder(nn.Module):
    """Optional positional encoding, ``num_layers`` layers, final LayerNorm: ``[B, T, D]``."""

    def __init__(
        self,
        num_layers: int,
        d_model: int,
        nhead: int,
        d_ffn: int,
        dropout: float = 0.0,
        activation: Activation = "relu",
        norm_before: bool = True,
        positional_encoding: bool = True,
    ) -> None:
        super().__init__()
        self.pos_enc = PositionalEncoding(d_model) if positional_encoding else None
        self.layers = nn.ModuleList(
            TransformerLayer(d_model, nhead, d_ffn, dropout, activation, norm_before)
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model, eps=1e-6)
        self.out_features = d_model

    def forward(self, x: Tensor) -> Tensor:
        if self.pos_enc is not None:
            x = self.pos_enc(x)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)
