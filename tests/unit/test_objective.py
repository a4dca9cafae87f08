"""The pairwise scores against textbook float64 definitions, and the objective a recipe names."""

from __future__ import annotations

import math

import pytest
import torch

from sepkit.losses import (
    PAIRWISE_SCORES,
    build_objective,
    pairwise_si_sdr,
    pairwise_snr,
    pairwise_snr_tau,
    pit_si_snr,
)

EPS = 1e-8


def textbook(name: str, e: torch.Tensor, r: torch.Tensor) -> float:
    """One pair, float64, written from the definitions (explicit projection, no closed form)."""
    e, r = e.double(), r.double()
    if name == "si_sdr":
        s = (e @ r) / (r @ r + EPS) * r
        return 10 * math.log10((float(s @ s) + EPS) / (float((e - s) @ (e - s)) + EPS))
    error = float((r - e) @ (r - e))
    if name == "snr":
        return 10 * math.log10((float(r @ r) + EPS) / (error + EPS))
    tau = 10 ** (-30 / 10)
    return 10 * math.log10((float(r @ r) + EPS) / (error + tau * float(r @ r) + EPS))


@pytest.mark.parametrize(
    ("name", "pairwise"),
    [("si_sdr", pairwise_si_sdr), ("snr", pairwise_snr), ("snr_tau", pairwise_snr_tau)],
)
def test_pairwise_scores_match_their_definitions(name: str, pairwise: object) -> None:
    gen = torch.Generator().manual_seed(0)
    ref = torch.randn(2, 3, 400, generator=gen) + 0.3  # a mean: si_sdr must not remove it
    est = ref[:, [2, 0, 1]] * 0.7 + 0.2 * torch.randn(2, 3, 400, generator=gen)
    scores = pairwise(est, ref)  # type: ignore[operator]
    for b in range(2):
        for k in range(3):
            for j in range(3):
                expected = textbook(name, est[b, j], ref[b, k])
                assert float(scores[b, k, j]) == pytest.approx(expected, abs=1e-3), (b, k, j)


def test_snr_tau_saturates_near_its_ceiling() -> None:
    ref = torch.randn(1, 2, 800, generator=torch.Generator().manual_seed(1))
    perfect = pairwise_snr_tau(ref.clone(), ref)
    assert torch.diagonal(perfect, dim1=1, dim2=2).max() == pytest.approx(30.0, abs=1e-3)
    assert pairwise_snr(ref.clone(), ref).max() > 60  # the plain SNR does not saturate


def test_every_built_in_loss_is_a_pit_objective() -> None:
    gen = torch.Generator().manual_seed(2)
    ref = torch.randn(3, 2, 500, generator=gen)
    est = ref.flip(1) + 0.1 * torch.randn(3, 2, 500, generator=gen)
    for name in PAIRWISE_SCORES:
        loss, perm = build_objective(name)(est, ref, None)
        assert loss.shape == (3,) and torch.isfinite(loss).all()
        assert perm.tolist() == [[1, 0]] * 3, name  # the swapped estimates are found
    si_snr_loss, _ = build_objective("si_snr")(est, ref, None)
    torch.testing.assert_close(si_snr_loss, pit_si_snr(est, ref)[0])


def negative_l1(est: torch.Tensor, ref: torch.Tensor, eps: float, lengths: object) -> torch.Tensor:
    """A user's own pairwise score (higher is better), named by a dotted path below."""
    return -(est.unsqueeze(1) - ref.unsqueeze(2)).abs().mean(-1)


def test_a_dotted_path_names_a_users_score() -> None:
    objective = build_objective(f"{__name__}:negative_l1")
    ref = torch.randn(2, 2, 100)
    loss, perm = objective(ref.flip(1), ref, None)
    assert perm.tolist() == [[1, 0], [1, 0]]
    assert torch.allclose(loss, torch.zeros(2), atol=1e-6)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("sisnr", "train.loss: unknown loss 'sisnr'; one of si_snr, si_sdr, snr, snr_tau"),
        ("no_such_module_x:fn", "train.loss: cannot import 'no_such_module_x'"),
        ("math:no_such_function", "train.loss: 'math' has no 'no_such_function'"),
        ("math:pi", "train.loss: 'math:pi' is not a function"),
    ],
)
def test_a_bad_loss_name_is_one_clear_error(name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        build_objective(name)
