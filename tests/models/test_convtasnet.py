"""Conv-TasNet specifics: published sizes, mask activations, causal mode."""

from __future__ import annotations

import pytest
import torch

from sepkit.models import build_model, model_config_from_dict
from sepkit.models.convtasnet import ConvTasNetConfig

TINY = {"name": "convtasnet", "N": 16, "L": 8, "B": 8, "H": 16, "P": 3, "X": 3, "R": 2}


def test_defaults_are_the_papers_best_configuration() -> None:
    _, cfg = model_config_from_dict({"name": "convtasnet"})
    assert (cfg.N, cfg.L, cfg.B, cfg.H, cfg.P, cfg.X, cfg.R) == (512, 16, 128, 512, 3, 8, 3)
    assert cfg.norm == "gLN" and cfg.num_spks == 2 and not cfg.causal
    params = sum(p.numel() for p in build_model({"name": "convtasnet"}).parameters())
    assert 4.9e6 < params < 5.2e6  # the paper reports 5.1 M


@pytest.mark.parametrize("mask_act", ["relu", "sigmoid", "softmax"])
def test_mask_activations(mask_act: str) -> None:
    model = build_model({**TINY, "num_spks": 3, "mask_act": mask_act}).eval()
    frames = torch.relu(torch.randn(2, 16, 40))
    with torch.no_grad():
        masks = model.masknet(frames)
    assert masks.shape == (2, 3, 16, 40)
    assert (masks >= 0).all()
    if mask_act == "sigmoid":
        assert (masks <= 1).all()
    if mask_act == "softmax":
        torch.testing.assert_close(masks.sum(1), torch.ones(2, 16, 40))


def test_causal_model_ignores_the_future() -> None:
    torch.manual_seed(0)
    model = build_model({**TINY, "causal": True, "norm": "cLN"}).eval()
    mix = torch.randn(1, 400)
    changed = mix.clone()
    changed[:, 300:] = torch.randn(1, 100)
    with torch.no_grad():
        a, b = model(mix), model(changed)
    # Samples before the change (minus one window that straddles it) are untouched.
    torch.testing.assert_close(a[..., :288], b[..., :288])
    assert not torch.allclose(a[..., 300:], b[..., 300:])


def test_causal_with_gln_is_rejected() -> None:
    with pytest.raises(ValueError, match="cLN"):
        model_config_from_dict({"name": "convtasnet", "causal": True})


def test_small_preset_exists() -> None:
    assert "small" in ConvTasNetConfig.PRESETS


def test_channel_layer_norm_is_layer_norm_over_channels_per_frame() -> None:
    """cLN against ``F.layer_norm`` over the channel axis of each frame, in float64."""
    from sepkit.models.norms import ChannelLayerNorm

    torch.manual_seed(0)
    norm = ChannelLayerNorm(6).double()
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = 3 * torch.randn(2, 6, 9, dtype=torch.float64) + 1
    want = torch.nn.functional.layer_norm(
        x.transpose(1, 2), (6,), norm.weight, norm.bias, norm.eps
    ).transpose(1, 2)
    torch.testing.assert_close(norm(x), want, rtol=1e-12, atol=1e-12)
