"""The CPU fast paths of sepkit.models.conv_ops against stock ATen in float64.

The float64 copy of a module takes the stock op (the fast paths are float32 only), so it is an
independent reference for the hand-written forward and backward.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from sepkit.models import build_model
from sepkit.models.conv_ops import DepthwiseConv1d, PReLU


def _values_and_grads(module: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> list[torch.Tensor]:
    x = x.clone().requires_grad_()
    out = module(x)
    out.backward(grad)
    assert x.grad is not None
    return [out.detach(), x.grad, *(p.grad for p in module.parameters() if p.grad is not None)]


def _check_against_float64(module: nn.Module, x: torch.Tensor, backward_name: str) -> None:
    reference = copy.deepcopy(module).double()
    fast_out = module(x.clone().requires_grad_())
    assert fast_out.grad_fn is not None and backward_name in fast_out.grad_fn.name()
    grad = torch.randn_like(fast_out)
    fast = _values_and_grads(module, x, grad)
    ref = _values_and_grads(reference, x.double(), grad.double())
    assert len(fast) == len(ref)
    for got, want in zip(fast, ref, strict=True):
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("kernel", "dilation", "padding"),
    [
        (3, 1, (1, 1)),
        (3, 8, (8, 8)),
        (3, 4, (8, 0)),
        (2, 3, (1, 2)),
        (5, 2, (4, 4)),
        (3, 2, (0, 0)),
    ],
)
def test_depthwise_conv_matches_aten(kernel: int, dilation: int, padding: tuple[int, int]) -> None:
    torch.manual_seed(0)
    conv = DepthwiseConv1d(6, kernel, dilation, padding)
    _check_against_float64(conv, torch.randn(3, 6, 50), "DepthwiseConv1d")


def test_depthwise_conv_without_bias() -> None:
    torch.manual_seed(1)
    conv = DepthwiseConv1d(4, 3, 2, (2, 2))
    conv.bias = None
    _check_against_float64(conv, torch.randn(2, 4, 30), "DepthwiseConv1d")


def test_prelu_matches_aten_on_both_sides_of_zero() -> None:
    torch.manual_seed(0)
    act = PReLU()
    with torch.no_grad():
        act.weight.fill_(-0.3)  # a slope outside [0, 1] too
    x = torch.randn(2, 5, 40)
    x[0, 0, :5] = 0.0
    _check_against_float64(act, x, "SharedPReLU")


def test_fast_paths_are_dropped_under_autocast_and_for_float64() -> None:
    conv, act = DepthwiseConv1d(4, 3, 1, (1, 1)), PReLU()
    x = torch.randn(1, 4, 20, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert "DepthwiseConv1d" not in conv(x).grad_fn.name()
    assert "SharedPReLU" not in act.double()(x.double()).grad_fn.name()


def test_convtasnet_step_equals_its_float64_reference() -> None:
    """The whole model: outputs and every parameter's gradient, fast float32 vs stock float64."""
    torch.manual_seed(0)
    model = build_model({"name": "convtasnet", "N": 16, "L": 8, "B": 8, "H": 16, "X": 3, "R": 2})
    reference = copy.deepcopy(model).double()
    mix = torch.randn(2, 800)
    out, ref = model(mix), reference(mix.double())
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-5)
    out.square().mean().backward()
    ref.square().mean().backward()
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        assert p.grad is not None and q.grad is not None, name
        torch.testing.assert_close(p.grad.double(), q.grad, rtol=1e-3, atol=1e-6, msg=name)


def test_pointwise_conv_in_inference_equals_the_stock_convolution() -> None:
    """The matrix-product path (no grad) against ``F.conv1d`` in float64."""
    from sepkit.models.conv_ops import PointwiseConv1d

    torch.manual_seed(0)
    conv = PointwiseConv1d(12, 7)
    x = torch.randn(3, 12, 5)
    with torch.no_grad():
        got = conv(x)
        want = torch.nn.functional.conv1d(x.double(), conv.weight.double(), conv.bias.double())
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-6)
    assert conv(x).requires_grad  # with grad: the stock convolution, differentiable
