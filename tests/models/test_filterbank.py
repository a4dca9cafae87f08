"""The decoder's CPU overlap-add against the stock transposed convolution in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sepkit.models.filterbank import Decoder


@pytest.mark.parametrize(
    ("channels", "kernel", "stride"),
    [(64, 16, 8), (128, 32, 16), (16, 2, 1), (32, 24, 8), (16, 21, 10)],  # the last: stock op
)
@pytest.mark.parametrize("frames", [1, 2, 37])
def test_decoder_matches_conv_transpose_in_float64(
    channels: int, kernel: int, stride: int, frames: int
) -> None:
    torch.manual_seed(0)
    decoder = Decoder(channels, kernel, stride)
    x = torch.randn(3, channels, frames, requires_grad=True)
    out = decoder(x)
    grad_out = torch.randn_like(out)
    out.backward(grad_out)

    x64 = x.detach().double().requires_grad_()
    w64 = decoder.deconv.weight.detach().double().requires_grad_()
    ref = F.conv_transpose1d(x64, w64, stride=stride).squeeze(1)
    ref.backward(grad_out.double())

    assert out.shape == ref.shape == (3, (frames - 1) * stride + kernel)
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(decoder.deconv.weight.grad.double(), w64.grad, rtol=1e-5, atol=1e-4)
