"""Scale-invariant SNR and permutation-invariant training (PIT), layout ``[batch, sources, time]``.

Where eps goes, and why
-----------------------
SI-SNR projects the estimate ``e`` on the (zero-mean) reference ``r``::

    alpha = <e, r> / (||r||^2 + eps)      s = alpha * r      n = e - s
    si_snr = 10 log10((||s||^2 + eps) / (||n||^2 + eps))

eps sits in the projection's denominator and on *both* sides of the energy ratio, so
:func:`si_snr` is finite for any finite input: a silent or constant reference gives
``10 log10(eps / (||e||^2 + eps))`` (0 dB when the estimate is silent too) instead of ``0 / 0``.

Silent references in the training loss
--------------------------------------
That finite number is an artefact of eps, not a measurement: the SI-SNR of an all-zero reference
is undefined (every scaling of zero is zero). Used as a loss it is harmful: it is about +100 dB for
an estimate of normal level (eps = 1e-8), and its gradient, ``~ 1 / ||e||``, drives the paired
estimate towards digital silence with a force that *grows* as the estimate gets quieter -- at 40 dB
below the other output it is ~4000x the gradient of the real source, so after clipping the example
teaches nothing else, and it does so even when the mixture does hold that voice (a source file
zeroed by a broken pipeline). Silent references are common in real corpora (a speaker who has not
started inside a crop), so :func:`pit_si_snr` leaves them out: a reference whose energy (after
removing the mean, over the valid samples) is at most eps -- exactly where eps, not the signal,
would set the value -- is *inactive* (:func:`active_sources`); its row does not take part in the
permutation search, and the example's loss is the mean over its active references only, with no
gradient through the inactive pairing. An example with no active reference has an undefined loss:
``pit_si_snr`` returns 0 for it (finite, no gradient) and the trainer leaves it out of the mean,
like an example filtered by the threshold (:func:`defined_examples`).

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


def active_sources(ref: Tensor, eps: float = EPS, lengths: Tensor | None = None) -> Tensor:
    """``[B, C]`` bool: True where ``ref [B, C, T]`` has energy above ``eps`` after removing its
    mean over the valid samples. An inactive (silent or constant) reference has no defined SI-SNR.
    """
    mask = _valid_mask(ref.shape[-1], lengths, ref)
    centred = _zero_mean(ref, mask)
    # Negated test: a NaN/inf reference is active, so its NaN reaches the loss and the trainer's
    # nonfinite check instead of passing for silence.
    return ~((centred * centred).sum(-1) <= eps)


def defined_examples(ref: Tensor, eps: float = EPS, lengths: Tensor | None = None) -> Tensor:
    """``[B]`` bool: True where the example has at least one active reference, i.e. where the PIT
    loss of :func:`pit_si_snr` means something; the trainer leaves the others out of the mean."""
    return active_sources(ref, eps, lengths).any(-1)


def pit_si_snr(
    est: Tensor,
    ref: Tensor,
    *,
    method: PitMethod = "auto",
    eps: float = EPS,
    lengths: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Permutation-invariant negative SI-SNR per example, over the example's active references.

    Returns ``(neg_si_snr [B], perm [B, C])`` where ``est[b, perm[b, k]]`` is matched with
    ``ref[b, k]`` and ``neg_si_snr[b] = -mean_k si_snr(est[b, perm[b, k]], ref[b, k])``, the mean
    running over the active references (:func:`active_sources`; silent ones have no defined SI-SNR,
    see the module docstring). An example with no active reference gets 0 and no gradient. Gradients
    flow only through the chosen pairing of active references. The search is exhaustive for
    C <= 5 (one gather over all C! permutations) and exact Hungarian assignment above; both give the
    same optimum.
    """
    scores = pairwise_si_snr(est, ref, eps=eps, lengths=lengths)
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


def apply_permutation(est: Tensor, perm: Tensor) -> Tensor:
    """Reorder ``est [B, C, T]`` so that ``out[b, k] = est[b, perm[b, k]]`` (aligned to the refs)."""
    index = perm.unsqueeze(-1).expand(-1, -1, est.shape[-1])
    return est.gather(1, index)
