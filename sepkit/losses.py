"""Scale-invariant SNR and permutation-invariant training (PIT), layout ``[batch, sources, time]``.

Where eps goes, and why
-----------------------
SI-SNR projects the estimate ``e`` on the (zero-mean) reference ``r``::

    alpha = <e, r> / (||r||^2 + eps)      s = alpha * r      n = e - s
    si_snr = 10 log10((||s||^2 + eps) / (||n||^2 + eps))

eps sits in the projection's denominator and on *both* sides of the energy ratio. A silent or
constant target (``r == 0`` after removing the mean; common in real corpora: a speaker who starts
late inside a crop) then gives ``s = 0`` and ``si_snr = 10 log10(eps / (||e||^2 + eps))``: finite,
strongly negative while the estimate has energy, and 0 dB when the estimate is silent too. Its
gradient pushes that estimate towards silence, which is the right thing to learn. Putting eps only
inside the log (``log10(ratio + eps)``) would give ``0 / 0 = NaN`` for a silent target and estimate.

The pairwise matrix is built in closed form from inner products, never materialising the
``[B, C, C, T]`` projections: with ``d = <e, r>``, ``||s||^2 = d^2 ||r||^2 / (||r||^2 + eps)^2`` and
``||n||^2 = ||e||^2 - 2 alpha d + ||s||^2``. That costs one batched matmul (``[B, C, T] x [B, T, C]``)
plus two energy reductions, whatever C is.
"""

from __future__ import annotations

import itertools
from typing import Literal

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

EPS = 1e-8
# Exhaustive search scores all C! permutations as one gather; above this it is Hungarian (O(C^3)).
EXHAUSTIVE_MAX_SOURCES = 5

PitMethod = Literal["auto", "exhaustive", "hungarian"]


def _valid_mask(length: int, lengths: Tensor | None, like: Tensor) -> Tensor | None:
    """``[B, 1, T]`` mask of valid samples for padded batches (None when nothing is padded)."""
    if lengths is None:
        return None
    steps = torch.arange(length, device=like.device)
    return (steps < lengths.to(like.device).view(-1, 1, 1)).to(like.dtype)


def _zero_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return x - x.mean(dim=-1, keepdim=True)
    count = mask.sum(dim=-1, keepdim=True).clamp_min(1.0)
    return (x - (x * mask).sum(dim=-1, keepdim=True) / count) * mask


def si_snr(est: Tensor, ref: Tensor, eps: float = EPS) -> Tensor:
    """SI-SNR in dB over the last axis; any leading shape (``[..., T]``), broadcasting allowed."""
    est = est - est.mean(dim=-1, keepdim=True)
    ref = ref - ref.mean(dim=-1, keepdim=True)
    dot = (est * ref).sum(dim=-1, keepdim=True)
    ref_energy = (ref * ref).sum(dim=-1, keepdim=True)
    proj = dot / (ref_energy + eps) * ref
    noise = est - proj
    ratio = ((proj * proj).sum(-1) + eps) / ((noise * noise).sum(-1) + eps)
    return 10 * torch.log10(ratio)


def pairwise_si_snr(
    est: Tensor, ref: Tensor, eps: float = EPS, lengths: Tensor | None = None
) -> Tensor:
    """``M[b, k, j] = si_snr(est[b, j], ref[b, k])`` for ``est, ref [B, C, T]``; result ``[B, C, C]``.

    ``lengths [B]`` restricts every example to its first ``lengths[b]`` samples (padded batches).
    """
    if est.shape != ref.shape or est.dim() != 3:
        raise ValueError(
            f"pairwise_si_snr: expected est and ref of equal shape [B, C, T], "
            f"got {tuple(est.shape)} and {tuple(ref.shape)}"
        )
    mask = _valid_mask(est.shape[-1], lengths, est)
    est = _zero_mean(est, mask)
    ref = _zero_mean(ref, mask)
    dot = torch.bmm(ref, est.transpose(1, 2))  # [B, C_ref, C_est]
    ref_energy = (ref * ref).sum(-1).unsqueeze(-1)  # [B, C_ref, 1]
    est_energy = (est * est).sum(-1).unsqueeze(-2)  # [B, 1, C_est]
    alpha = dot / (ref_energy + eps)
    target_energy = alpha * alpha * ref_energy
    # Clamp: rounding can leave a hair below zero when est is (almost) a multiple of ref.
    noise_energy = (est_energy - 2 * alpha * dot + target_energy).clamp_min(0.0)
    return 10 * torch.log10((target_energy + eps) / (noise_energy + eps))


_PERMUTATIONS: dict[tuple[int, torch.device], Tensor] = {}


def _all_permutations(num: int, device: torch.device) -> Tensor:
    key = (num, device)
    if key not in _PERMUTATIONS:
        perms = list(itertools.permutations(range(num)))
        _PERMUTATIONS[key] = torch.tensor(perms, dtype=torch.long, device=device)
    return _PERMUTATIONS[key]


def best_permutation(scores: Tensor, method: PitMethod = "auto") -> Tensor:
    """For ``scores [B, C, C]`` (higher is better, ref rows, est columns) return ``perm [B, C]``
    maximising ``sum_k scores[b, k, perm[b, k]]``. Not differentiable (it is an argmax)."""
    num = scores.shape[-1]
    if method == "auto":
        method = "exhaustive" if num <= EXHAUSTIVE_MAX_SOURCES else "hungarian"
    if method == "exhaustive":
        perms = _all_permutations(num, scores.device)  # [P, C]
        rows = torch.arange(num, device=scores.device)
        totals = scores[:, rows, perms].sum(-1)  # [B, P]
        return perms[totals.argmax(dim=-1)]
    # Hungarian: one host transfer for the whole batch, then scipy per example.
    matrix = scores.detach().to("cpu", torch.float64).numpy()
    if not np.isfinite(matrix).all():
        matrix = np.nan_to_num(matrix, nan=-1e12, posinf=1e12, neginf=-1e12)
    perm = np.stack([linear_sum_assignment(m, maximize=True)[1] for m in matrix])
    return torch.from_numpy(perm).to(scores.device)


def pit_si_snr(
    est: Tensor,
    ref: Tensor,
    *,
    method: PitMethod = "auto",
    eps: float = EPS,
    lengths: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Permutation-invariant negative SI-SNR per example.

    Returns ``(neg_si_snr [B], perm [B, C])`` where ``est[b, perm[b, k]]`` is matched with
    ``ref[b, k]`` and ``neg_si_snr[b] = -mean_k si_snr(est[b, perm[b, k]], ref[b, k])``. Gradients
    flow only through the chosen pairing. The search is exhaustive for C <= 5 (one gather over all
    C! permutations) and exact Hungarian assignment above; both give the same optimum.
    """
    scores = pairwise_si_snr(est, ref, eps=eps, lengths=lengths)
    perm = best_permutation(scores.detach(), method)
    matched = scores.gather(2, perm.unsqueeze(-1)).squeeze(-1)  # [B, C]
    return -matched.mean(dim=-1), perm


def apply_permutation(est: Tensor, perm: Tensor) -> Tensor:
    """Reorder ``est [B, C, T]`` so that ``out[b, k] = est[b, perm[b, k]]`` (aligned to the refs)."""
    index = perm.unsqueeze(-1).expand(-1, -1, est.shape[-1])
    return est.gather(1, index)
