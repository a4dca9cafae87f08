"""ShiftEnsemble: the mean over sub-frame input delays, each view put in the running sum's speaker
order and sign first. Checked against a float64 brute-force reference on a real Conv-TasNet."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from sepkit.evaluation.shift_ensemble import ShiftEnsemble, encoder_hop, shift_offsets
from sepkit.models.registry import build_model

torch.set_num_threads(1)


@pytest.mark.parametrize(
    ("shifts", "hop", "expected"),
    [
        (1, 16, [0]),
        (2, 16, [0, 8]),
        (4, 16, [0, 4, 8, 12]),
        (3, 16, [0, 5, 10]),
        (8, 4, [0, 1, 2, 3]),  # a hop has only `hop` frame phases
        (3, None, [0, 1, 2]),  # no known hop: one-sample delays
    ],
)
def test_offsets_spread_over_one_hop(shifts: int, hop: int | None, expected: list[int]) -> None:
    assert shift_offsets(shifts, hop) == expected


def test_zero_shifts_is_an_error() -> None:
    with pytest.raises(ValueError, match="shifts: must be >= 1"):
        shift_offsets(0, 16)


def _si_snr(est: np.ndarray, ref: np.ndarray) -> float:
    ref = ref - ref.mean()
    est = est - est.mean()
    target = (est @ ref) / (ref @ ref) * ref
    return float(10 * np.log10((target @ target) / ((est - target) @ (est - target))))


def _reference(model: nn.Module, mix: Tensor, offsets: list[int]) -> np.ndarray:
    """Float64 brute force, one example at a time: every permutation scored by mean SI-SNR
    against the running sum, then each source's sign set by its correlation with the sum."""
    out = []
    with torch.no_grad():
        for x in mix:
            total = None
            for off in offsets:
                view = model(nn.functional.pad(x[None], (off, 0)))[0, :, off:].double().numpy()
                if total is None:
                    total = view
                    continue
                perm = max(
                    itertools.permutations(range(len(view))),
                    key=lambda p: np.mean([_si_snr(view[j], total[k]) for k, j in enumerate(p)]),
                )
                view = view[list(perm)]
                signs = np.sign(np.sum(view * total, axis=-1, keepdims=True))
                total = total + view * np.where(signs == 0, 1, signs)
            assert total is not None
            out.append(total / len(offsets))
    return np.stack(out)


@pytest.mark.parametrize("num_spks", [2, 3])
def test_conv_tasnet_ensemble_equals_brute_force_reference(num_spks: int) -> None:
    torch.manual_seed(0)
    model = build_model({"name": "convtasnet", "preset": "small", "num_spks": num_spks}).eval()
    assert encoder_hop(model) == 16
    mix = torch.randn(2, 3001) * 0.1
    ensemble = ShiftEnsemble(model, 4)
    assert ensemble.offsets == [0, 4, 8, 12]
    with torch.no_grad():
        got = ensemble(mix)
        single = model(mix)
    assert got.shape == single.shape == (2, num_spks, 3001)
    np.testing.assert_allclose(
        got.double().numpy(), _reference(model, mix, [0, 4, 8, 12]), atol=2e-5
    )
    assert not torch.allclose(got, single, atol=1e-4)  # the views really differ
    with torch.no_grad():
        assert torch.equal(ShiftEnsemble(model, 1)(mix), single)


class ShiftEquivariantFilters(nn.Module):
    """Two fixed FIR filters (no frames, so a delay only delays the output), whose output order
    and sign flip when the input length is odd, as a PIT-trained model's may between views."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.register_buffer("weight", torch.randn(2, 1, 9, generator=gen))

    def forward(self, mix: Tensor) -> Tensor:
        out = nn.functional.conv1d(mix.unsqueeze(1), self.weight, padding=4)
        return -out.flip(1) if mix.shape[-1] % 2 else out


def test_views_in_another_order_and_sign_are_aligned_not_cancelled() -> None:
    model = ShiftEquivariantFilters()
    mix = torch.randn(3, 400)
    ensemble = ShiftEnsemble(model, 2)  # no encoder: delays 0 and 1 sample
    assert ensemble.offsets == [0, 1]
    with torch.no_grad():
        got, single = ensemble(mix), model(mix)
        naive = (single + model(nn.functional.pad(mix, (1, 0)))[..., 1:]) / 2
    # The delayed view equals the direct one up to order and sign (and the first sample, where
    # the filter sees the added zero): the ensemble keeps it, a plain mean would cancel it.
    torch.testing.assert_close(got[..., 8:], single[..., 8:], atol=1e-5, rtol=1e-5)
    assert (naive - single)[..., 8:].norm() > 0.5 * single[..., 8:].norm()
