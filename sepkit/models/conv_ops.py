"""CPU fast paths for the two slowest pieces of a Conv-TasNet step: PReLU and depthwise convolution.

A profile of the demo's Conv-TasNet training step on one CPU core (docs/benchmarks.md) put a large
share of it in ``_prelu_kernel_backward`` and in the backward of the dilated depthwise
convolutions, for work that is a few multiply-adds per sample:

* PReLU with one shared slope: ATen's CPU backward computes the input and slope gradients in
  one scalar (unvectorised) loop, ~5x the cost of the forward. :class:`_SharedPReLU` computes
  the input gradient with the vectorised leaky-ReLU backward and the slope gradient as one
  multiply-and-sum.
* A depthwise convolution with a short kernel (``P = 3``) is ``P`` shifted, per-channel scaled
  copies of the input. oneDNN's depthwise backward is slow for 1-D dilated kernels;
  :class:`_DepthwiseConv1d` writes the forward and both gradients as ``P`` fused multiply-adds
  on strided views (and the weight gradient as ``P`` multiply-and-sums).

Both are exact up to float32 rounding (tests/models/test_conv_ops.py checks values and gradients
against float64 references). They run on CPU float32 tensors outside autocast and
``torch.compile``; everything else takes the stock ATen op, and ``SEPKIT_FAST_CONV_OPS=0``
turns them off.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from sepkit.models.fast_path import cpu_fast_path, fast_conv_ops_enabled


class _SharedPReLU(torch.autograd.Function):
    """``max(0, x) + a * min(0, x)`` with one slope ``a``, and a vectorised backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, slope: Tensor) -> Tensor:
        ctx.save_for_backward(x, slope)
        return torch.prelu(x, slope)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        x, slope = ctx.saved_tensors
        grad_x = grad_slope = None
        if ctx.needs_input_grad[0]:
            # A CPU tensor: reading the slope is no device sync.
            grad_x = torch.ops.aten.leaky_relu_backward(grad, x, float(slope), False)
        if ctx.needs_input_grad[1]:
            grad_slope = torch.mul(grad, x.clamp(max=0)).sum().reshape(slope.shape)
        return grad_x, grad_slope


class PReLU(nn.PReLU):
    """``nn.PReLU`` (same parameter, same state-dict key) with the fast CPU backward above."""

    def forward(self, x: Tensor) -> Tensor:
        fast = self.num_parameters == 1 and fast_conv_ops_enabled()
        if fast and cpu_fast_path(x, self.weight) and _needs_grad(x, self.weight):
            out: Tensor = _SharedPReLU.apply(x, self.weight)
            return out
        return F.prelu(x, self.weight)


def _depthwise_taps(padded: Tensor, weight: Tensor, bias: Tensor | None, dilation: int) -> Tensor:
    """The depthwise convolution as ``P`` multiply-adds on shifted views (the forward)."""
    taps = weight.shape[-1]
    length = padded.shape[-1] - dilation * (taps - 1)
    w = weight.reshape(-1, taps, 1)  # [C, P, 1]: each tap broadcasts over time
    out = padded[..., :length] * w[:, 0]
    for k in range(1, taps):
        out.addcmul_(padded[..., k * dilation : k * dilation + length], w[:, k])
    if bias is not None:
        out += bias.unsqueeze(-1)
    return out


def _needs_grad(*tensors: Tensor | None) -> bool:
    """Whether a backward may run: only then is a custom autograd Function worth its cost."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


class _DepthwiseConv1d(torch.autograd.Function):
    """Depthwise conv of a padded ``[B, C, T + d (P - 1)]`` input with weights ``[C, 1, P]``."""

    @staticmethod
    def forward(
        ctx: Any, padded: Tensor, weight: Tensor, bias: Tensor | None, dilation: int
    ) -> Tensor:
        out = _depthwise_taps(padded, weight, bias, dilation)
        ctx.dilation = dilation
        ctx.has_bias = bias is not None
        ctx.save_for_backward(padded, weight)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        padded, weight = ctx.saved_tensors
        d, taps = ctx.dilation, weight.shape[-1]
        length = grad.shape[-1]
        w = weight.reshape(-1, taps, 1)
        grad_in = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_in = padded.new_zeros(padded.shape)
            for k in range(taps):
                grad_in[..., k * d : k * d + length].addcmul_(grad, w[:, k])
        if ctx.needs_input_grad[1]:
            sums = [
                torch.mul(grad, padded[..., k * d : k * d + length]).sum((0, 2))
                for k in range(taps)
            ]
            grad_w = torch.stack(sums, -1).reshape(weight.shape)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2))
        return grad_in, grad_w, grad_b, None


class DepthwiseConv1d(nn.Conv1d):
    """Dilated depthwise ``nn.Conv1d`` (``groups = channels``) that pads its own input.

    Same parameters and state-dict keys as the ``nn.Conv1d`` it replaces; ``padding`` is
    ``(left, right)`` so that causal (all left) and centred padding are one code path.
    """

    def __init__(self, channels: int, kernel: int, dilation: int, padding: tuple[int, int]) -> None:
        super().__init__(channels, channels, kernel, dilation=dilation, groups=channels)
        self.pad_lr = padding

    @property
    def context(self) -> int:
        """Input frames each output frame looks at besides its own: ``dilation * (kernel - 1)``."""
        return self.dilation[0] * (self.kernel_size[0] - 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.valid(F.pad(x, self.pad_lr))

    def valid(self, padded: Tensor) -> Tensor:
        """The convolution of an input that already holds its context: ``context`` fewer frames
        out than in. A stream calls it on the frames it kept from its previous block followed
        by the new ones."""
        if (
            padded.dim() == 3
            and fast_conv_ops_enabled()
            and cpu_fast_path(padded, self.weight, self.bias)
        ):
            if not _needs_grad(padded, self.weight, self.bias):  # inference: no Function needed
                return _depthwise_taps(padded, self.weight, self.bias, self.dilation[0])
            out: Tensor = _DepthwiseConv1d.apply(padded, self.weight, self.bias, self.dilation[0])
            return out
        return F.conv1d(padded, self.weight, self.bias, dilation=self.dilation, groups=self.groups)


class PointwiseConv1d(nn.Conv1d):
    """A kernel-1 ``nn.Conv1d`` (same parameters and keys) that, when no backward will run,
    is one matrix product: ATen sends small 1x1 convolutions through its slow generic kernel,
    which dominates a live stream's few-frame blocks. Training keeps the stock convolution."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        fast = x.dim() == 3 and fast_conv_ops_enabled() and cpu_fast_path(x, self.weight)
        if fast and not _needs_grad(x, self.weight, self.bias):
            out = torch.matmul(self.weight.squeeze(-1), x)
            return out if self.bias is None else out.add_(self.bias.unsqueeze(-1))
        return super().forward(x)
