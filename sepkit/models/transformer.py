"""Transformer encoder used inside the dual-path models (SepFormer's IntraT and InterT).

Batch-first, attention through ``scaled_dot_product_attention`` (fused kernels, no attention
matrix kept for backward, no head-averaged weights computed), and parameter shapes equal to
``torch.nn.MultiheadAttention``'s packed in-projection, so that SpeechBrain weights map 1:1.

Two CPU-only speed-ups, both exact up to float32 rounding (measured in docs/benchmarks.md):

* :func:`linear` runs float32 ``Linear`` layers on the CPU through oneDNN with the bias (and the
  FFN's ReLU) fused into the matrix product: no separate pass that broadcasts the bias into the
  output, none for the activation, and oneDNN's kernels are faster than the BLAS ``addmm`` at
  these shapes. The backward is hand-written (``dX = dY W`` through oneDNN, ``dW = dY^T X``,
  ``db = sum dY``). Anything else (GPU, autocast, other dtypes, ``torch.compile``, a torch without
  the op) takes ``F.linear``; ``SEPKIT_ONEDNN_LINEAR=0`` turns the fast path off.
* Attention over short sequences (<= 32 steps, e.g. SepFormer's inter-chunk pass on short crops)
  uses plain batched matrix products and softmax, faster there than the CPU flash kernel.
"""

from __future__ import annotations

import math
import os
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from sepkit.models.fast_path import cpu_fast_path

Activation = Literal["relu", "gelu"]

# Sequences up to this length attend with explicit matmul + softmax on the CPU (see above).
SHORT_ATTENTION_MAX = 32

_onednn_state: dict[str, bool] = {}


def _linear_pointwise(x: Tensor, weight: Tensor, bias: Tensor | None, relu: bool) -> Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "relu" if relu else "none", [], "")


def _onednn_ok() -> bool:
    """Whether the fused oneDNN linear exists here and agrees with ``F.linear`` (checked once)."""
    if "ok" not in _onednn_state:
        ok = os.environ.get("SEPKIT_ONEDNN_LINEAR", "1") != "0"
        ok = (
            ok
            and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_linear_pointwise")
        )
        if ok:
            try:
                gen = torch.Generator().manual_seed(0)
                x, w, b = (torch.randn(*s, generator=gen) for s in ((5, 4), (3, 4), (3,)))
                with torch.no_grad():
                    ok = torch.allclose(
                        _linear_pointwise(x, w, b, True), F.linear(x, w, b).relu(), atol=1e-5
                    )
            except Exception:  # an op that changed or is missing: keep the portable path
                ok = False
        _onednn_state["ok"] = ok
    return _onednn_state["ok"]


class _FusedCpuLinear(torch.autograd.Function):
    """``act(x W^T + b)`` for CPU float32 through oneDNN, act in {identity, ReLU}."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, relu: bool) -> Tensor:
        flat = x.reshape(-1, x.shape[-1]).contiguous()
        out = _linear_pointwise(flat, weight, bias, relu)
        ctx.relu = relu
        ctx.has_bias = bias is not None
        ctx.in_shape = x.shape
        ctx.save_for_backward(flat, weight, out if relu else None)
        return out.view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        flat, weight, out = ctx.saved_tensors
        grad = grad.reshape(-1, weight.shape[0]).contiguous()
        if ctx.relu:
            grad = torch.ops.aten.threshold_backward(grad, out, 0.0)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _linear_pointwise(grad, weight.t().contiguous(), None, False)
            grad_x = grad_x.view(ctx.in_shape)
        if ctx.needs_input_grad[1]:
            grad_w = grad.t().mm(flat)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum(0)
        return grad_x, grad_w, grad_b, None


def linear(x: Tensor, layer: nn.Linear, relu: bool = False) -> Tensor:
    """``layer(x)`` (then ReLU when ``relu``), fused through oneDNN on CPU float32."""
    weight, bias = layer.weight, layer.bias
    if x.dim() >= 2 and cpu_fast_path(x, weight) and _onednn_ok():
        out: Tensor = _FusedCpuLinear.apply(x, weight, bias, relu)
        return out
    out = F.linear(x, weight, bias)
    return torch.relu(out) if relu else out


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
        qkv = linear(x, self.in_proj).view(batch, length, 3, self.nhead, dim // self.nhead)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, T, Dh]
        dropout = self.dropout if self.training else 0.0
        if x.device.type == "cpu" and length <= SHORT_ATTENTION_MAX:
            weights = torch.softmax((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1), dim=-1)
            out = F.dropout(weights, dropout) @ v if dropout else weights @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        return linear(out.transpose(1, 2).reshape(batch, length, dim), self.out_proj)


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
        self.relu = activation == "relu"

    def feed_forward(self, x: Tensor) -> Tensor:
        """``self.ffn(x)``, with the ReLU fused into the first projection where possible."""
        first, act, drop, second = self.ffn
        assert isinstance(first, nn.Linear) and isinstance(second, nn.Linear)
        hidden = linear(x, first, relu=True) if self.relu else act(linear(x, first))
        return linear(drop(hidden), second)

    def forward(self, x: Tensor) -> Tensor:
        if self.norm_before:
            x = x + self.dropout(self.attn(self.norm1(x)))
            return x + self.dropout(self.feed_forward(self.norm2(x)))
        x = self.norm1(x + self.dropout(self.attn(x)))
        return self.norm2(x + self.dropout(self.feed_forward(x)))


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
