"""PIT SI-SNR against a brute-force float64 reference written here from the definition."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from sepkit.losses import (
    active_sources,
    apply_permutation,
    best_permutation,
    defined_examples,
    pairwise_si_snr,
    pit_si_snr,
    si_snr,
)

EPS = 1e-8


def reference_si_snr(e: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Textbook SI-SNR (explicit projection), float64, differentiable."""
    e = e - e.mean()
    r = r - r.mean()
    s = (e @ r) / (r @ r + EPS) * r
    n = e - s
    return 10 * torch.log10((s @ s + EPS) / (n @ n + EPS))


def brute_force_pit(est: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, list[tuple]]:
    losses, perms = [], []
    num = est.shape[1]
    for b in range(est.shape[0]):
        best, best_perm = None, None
        for perm in itertools.permutations(range(num)):
            value = -torch.stack([reference_si_snr(est[b, perm[k]], ref[b, k]) for k in range(num)])
            value = value.mean()
            if best is None or value.item() < best.item():
                best, best_perm = value, perm
        losses.append(best)
        perms.append(best_perm)
    return torch.stack(losses), perms


def make_inputs(batch: int, num: int, length: int, kind: str, seed: int):
    gen = torch.Generator().manual_seed(seed)
    ref = torch.randn(batch, num, length, generator=gen, dtype=torch.float64)
    if kind == "random":
        est = torch.randn(batch, num, length, generator=gen, dtype=torch.float64)
    else:  # permuted references plus noise: the PIT answer is known
        perm = torch.stack([torch.randperm(num, generator=gen) for _ in range(batch)])
        est = apply_permutation(ref, torch.argsort(perm, dim=1))
        est = 0.7 * est + 0.3 * torch.randn(est.shape, generator=gen, dtype=torch.float64)
    return est, ref


@pytest.mark.parametrize("num", [1, 2, 3, 4, 5, 6, 7])
@pytest.mark.parametrize("kind", ["random", "permuted"])
def test_pit_matches_brute_force(num: int, kind: str) -> None:
    est, ref = make_inputs(3, num, 200, kind, seed=num)
    est.requires_grad_(True)
    loss, perm = pit_si_snr(est, ref)
    expected, expected_perms = brute_force_pit(est.detach(), ref)
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-9, atol=1e-9)
    # perm[b, k] is the estimate matched with reference k
    assert [tuple(p) for p in perm.tolist()] == expected_perms


@pytest.mark.parametrize("num", [2, 3, 4, 6, 7])
def test_gradients_match_brute_force(num: int) -> None:
    est, ref = make_inputs(2, num, 120, "permuted", seed=10 + num)
    est_a = est.clone().requires_grad_(True)
    est_b = est.clone().requires_grad_(True)
    pit_si_snr(est_a, ref)[0].sum().backward()
    brute_force_pit(est_b, ref)[0].sum().backward()
    torch.testing.assert_close(est_a.grad, est_b.grad, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("num", [2, 3, 4, 5, 6, 7, 8])
def test_hungarian_and_exhaustive_agree(num: int) -> None:
    scores = torch.randn(16, num, num, generator=torch.Generator().manual_seed(num))
    hung = best_permutation(scores, "hungarian")
    if num <= 8:
        exh = best_permutation(scores, "exhaustive")
        assert torch.equal(hung, exh)
    loss_h, perm_h = pit_si_snr(*make_inputs(2, num, 64, "permuted", 1), method="hungarian")
    loss_e, perm_e = pit_si_snr(*make_inputs(2, num, 64, "permuted", 1), method="exhaustive")
    torch.testing.assert_close(loss_h, loss_e)
    assert torch.equal(perm_h, perm_e)


def test_many_sources_hungarian_recovers_permutation() -> None:
    num = 12
    est, ref = make_inputs(2, num, 400, "permuted", seed=3)
    loss, perm = pit_si_snr(est, ref)  # auto -> Hungarian at C=12
    aligned = apply_permutation(est, perm)
    direct = -si_snr(aligned, ref).mean(-1)
    torch.testing.assert_close(loss, direct)
    # every reference is matched to its noisy copy: SI-SNR of 0.7 s + 0.3 n is clearly positive
    assert (si_snr(aligned, ref) > 3).all()


def test_pairwise_matches_elementwise_si_snr() -> None:
    est, ref = make_inputs(2, 3, 100, "random", seed=5)
    matrix = pairwise_si_snr(est, ref)
    expected = si_snr(est.unsqueeze(1), ref.unsqueeze(2))  # [B, ref, est]
    torch.testing.assert_close(matrix, expected, rtol=1e-9, atol=1e-9)


def test_silent_reference_is_left_out_of_the_loss() -> None:
    # A silent or constant reference has no defined SI-SNR: the example is scored on its other
    # references only, and the estimate left for the silent one gets no gradient at all.
    est, ref = make_inputs(2, 2, 100, "random", seed=6)
    ref[0, 1] = 0.0  # silent
    ref[1, 0] = 0.25  # constant: silent after removing the mean
    est = est.requires_grad_(True)
    loss, perm = pit_si_snr(est, ref)
    assert active_sources(ref).tolist() == [[True, False], [False, True]]
    for b, k in ((0, 0), (1, 1)):  # the one active reference, matched with its best estimate
        scores = torch.stack([reference_si_snr(est[b, j].detach(), ref[b, k]) for j in range(2)])
        assert loss[b].item() == pytest.approx(-scores.max().item(), abs=1e-9)
        assert perm[b, k] == scores.argmax()
    loss.sum().backward()
    for b, k in ((0, 0), (1, 1)):
        unused = 1 - int(perm[b, k])
        assert torch.count_nonzero(est.grad[b, unused]) == 0  # nothing pushes it anywhere
        assert torch.count_nonzero(est.grad[b, 1 - unused]) > 0


def test_example_without_active_reference_has_zero_loss_and_is_undefined() -> None:
    est, ref = make_inputs(2, 2, 100, "random", seed=9)
    ref[1] = 0.0
    est = est.requires_grad_(True)
    loss, _ = pit_si_snr(est, ref)
    loss.sum().backward()
    assert loss[1].item() == 0.0
    assert torch.count_nonzero(est.grad[1]) == 0
    assert defined_examples(ref).tolist() == [True, False]
    # si_snr itself stays finite: silent target and silent estimate give 0 dB, not NaN
    assert si_snr(torch.zeros(50), torch.zeros(50)).item() == pytest.approx(0.0)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nonfinite_never_passes_for_silence(value: float) -> None:
    # A NaN/inf reference is not "silent", and a NaN/inf estimate paired with a silent reference
    # is not masked away: both must reach the loss, where the trainer's nonfinite check sees them.
    est, ref = make_inputs(2, 2, 100, "random", seed=10)
    ref[0, 1, 7] = value
    ref[1, 1] = 0.0
    est[1, :, 3] = value  # whichever estimate the silent reference is left with
    loss, _ = pit_si_snr(est, ref)
    assert active_sources(ref)[0].tolist() == [True, True]
    assert not torch.isfinite(loss).any()


def test_lengths_restrict_to_valid_samples() -> None:
    est, ref = make_inputs(2, 2, 100, "random", seed=7)
    lengths = torch.tensor([100, 60])
    padded_est, padded_ref = est.clone(), ref.clone()
    padded_est[1, :, 60:] = 5.0  # garbage in the padding must not matter
    padded_ref[1, :, 60:] = -3.0
    loss, _ = pit_si_snr(padded_est, padded_ref, lengths=lengths)
    loss0, _ = pit_si_snr(est[:1], ref[:1])
    loss1, _ = pit_si_snr(est[1:, :, :60], ref[1:, :, :60])
    torch.testing.assert_close(loss, torch.cat([loss0, loss1]))


def test_float32_close_to_float64() -> None:
    est, ref = make_inputs(4, 3, 16000, "permuted", seed=8)
    loss64, _ = pit_si_snr(est, ref)
    loss32, _ = pit_si_snr(est.float(), ref.float())
    np.testing.assert_allclose(loss32.double().numpy(), loss64.numpy(), atol=1e-3)
