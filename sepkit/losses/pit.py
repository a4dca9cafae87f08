"""Permutation-invariant training (PIT) over any pairwise score, layout ``[batch, sources, time]``.

Silent references
-----------------
The SI-SNR of an all-zero reference is undefined (every scaling of zero is zero); the finite
number eps produces is an artefact. Used as a loss it is harmful: it is about +100 dB for an
estimate of normal level (eps = 1e-8), and its gradient, ``~ 1 / ||e||``, drives the paired
estimate towards digital silence with a force that *grows* as the estimate gets quieter, even when
the mixture does hold that voice (a source file zeroed by a broken pipeline). Silent references
are common in real corpora (a speaker who has not started inside a crop), so :class:`PITLoss`
leaves them out: a reference whose energy (after removing the mean, over the valid samples) is at
most eps is *inactive* (:func:`active_sources`); its row does not take part in the permutation
search, and the example's loss is the mean over its active references only, with no gradient
through the inactive pairing. An example with no active reference has an undefined loss: the loss
is 0 for it (finite, no gradient) and the trainer leaves it out of the mean, like an example
filtered by the threshold (:func:`defined_examples`). This holds for every pairwise score.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from sepkit.losses.pairwise import EPS, pairwise_si_snr, valid_mask, zero_mean

# Exhaustive search scores all C! permutations as one gather; above this it is Hungarian (O(C^3)).
EXHAUSTIVE_MAX_SOURCES = 5

PitMethod = Literal["auto", "exhaustive", "hungarian"]
#: ``(est [B, C, T], ref [B, C, T], eps, lengths) -> scores [B, C_ref, C_est]``, higher is better.
PairwiseScore = Callable[..., Tensor]


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


def active_sources(ref: Tensor, eps: float = EPS, lengths: Tensor | None = None) -> Tensor:
    """``[B, C]`` bool: True where ``ref [B, C, T]`` has energy above ``eps`` after removing its
    mean over the valid samples. An inactive (silent or constant) reference has no defined SI-SNR.
    """
    mask = valid_mask(ref.shape[-1], lengths, ref)
    centred = zero_mean(ref, mask)
    # Negated test: a NaN/inf reference is active, so its NaN reaches the loss and the trainer's
    # nonfinite check instead of passing for silence.
    return ~((centred * centred).sum(-1) <= eps)


def defined_examples(ref: Tensor, eps: float = EPS, lengths: Tensor | None = None) -> Tensor:
    """``[B]`` bool: True where the example has at least one active reference, i.e. where the PIT
    loss of :func:`pit_si_snr` means something; the trainer leaves the others out of the mean."""
    return active_sources(ref, eps, lengths).any(-1)


def pit_loss(
    pairwise: PairwiseScore,
    est: Tensor,
    ref: Tensor,
    *,
    method: PitMethod = "auto",
    eps: float = EPS,
    lengths: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Permutation-invariant negative ``pairwise`` score per example, over the active references.

    Returns ``(loss [B], perm [B, C])`` where ``est[b, perm[b, k]]`` is matched with ``ref[b, k]``
    and ``loss[b] = -mean_k score(est[b, perm[b, k]], ref[b, k])``, the mean running over the
    active references (:func:`active_sources`; silent ones have no defined score, see the module
    docstring). An example with no active reference gets 0 and no gradient. Gradients flow only
    through the chosen pairing of active references. The search is exhaustive for C <= 5 (one
    gather over all C! permutations) and exact Hungarian assignment above; both give the same
    optimum.
    """
    scores = pairwise(est, ref, eps=eps, lengths=lengths)
    active = active_sources(ref, eps, lengths)  # [B, C_ref]
    # An inactive row is constant, so it cannot sway the search; its estimate takes what is left.
    search = scores.detach().masked_fill(~active.unsqueeze(-1), 0.0)
    perm = best_permutation(search, method)
    matched = scores.gather(2, perm.unsqueeze(-1)).squeeze(-1)  # [B, C]
    # A product, not a where: a finite inactive score becomes 0 with exactly zero gradient, while a
    # NaN/inf one (a nonfinite estimate) stays nonfinite and is caught, never silently dropped.
    matched = matched * active.to(matched.dtype)
    count = active.sum(-1).clamp_min(1).to(matched.dtype)
    return -matched.sum(-1) / count, perm


def pit_si_snr(
    est: Tensor,
    ref: Tensor,
    *,
    method: PitMethod = "auto",
    eps: float = EPS,
    lengths: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Permutation-invariant negative SI-SNR per example (:func:`pit_loss` over
    :func:`~sepkit.losses.pairwise.pairwise_si_snr`): ``(neg_si_snr [B], perm [B, C])``."""
    return pit_loss(pairwise_si_snr, est, ref, method=method, eps=eps, lengths=lengths)


def apply_permutation(est: Tensor, perm: Tensor) -> Tensor:
    """Reorder ``est [B, C, T]`` so that ``out[b, k] = est[b, perm[b, k]]`` (aligned to the refs)."""
    index = perm.unsqueeze(-1).expand(-1, -1, est.shape[-1])
    return est.gather(1, index)
