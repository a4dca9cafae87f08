"""Pairwise separation scores ``[B, C_ref, C_est]`` in dB (higher is better), the matrices PIT
searches over, and their single-pair forms.

Where eps goes, and why
-----------------------
SI-SNR projects the estimate ``e`` on the (zero-mean) reference ``r``::

    alpha = <e, r> / (||r||^2 + eps)      s = alpha * r      n = e - s
    si_snr = 10 log10((||s||^2 + eps) / (||n||^2 + eps))

eps sits in the projection's denominator and on *both* sides of the energy ratio, so
:func:`si_snr` is finite for any finite input: a silent or constant reference gives
``10 log10(eps / (||e||^2 + eps))`` (0 dB when the estimate is silent too) instead of ``0 / 0``.

Every pairwise matrix is built in closed form from inner products, never materialising the
``[B, C, C, T]`` projections: with ``d = <e, r>``, ``||s||^2 = d^2 ||r||^2 / (||r||^2 + eps)^2`` and
``||n||^2 = ||e||^2 - 2 alpha d + ||s||^2``; plain SNR needs ``||r - e||^2 = ||r||^2 - 2 d +
||e||^2``. That costs one batched matmul (``[B, C, T] x [B, T, C]``) plus two energy reductions,
whatever C is.

The scores:

* ``si_snr``: scale-invariant SNR of the zero-mean signals (Luo & Mesgarani; the separation
  literature's usual training loss);
* ``si_sdr``: the same without removing the means (Le Roux et al., 2019);
* ``snr``: plain SNR, sensitive to the estimate's scale, for models that must keep the level;
* ``snr_tau``: SNR with a soft ceiling, ``10 log10(||r||^2 / (||r - e||^2 + tau ||r||^2))`` with
  ``tau = 10^(-30/10)``: an example already separated far beyond 30 dB stops dominating the
  gradient (Wisdom et al., 2020, "thresholded SNR").
"""

from __future__ import annotations

import torch
from torch import Tensor

EPS = 1e-8
#: snr_tau's ceiling: scores saturate near this many dB.
SNR_TAU_CEILING_DB = 30.0


def valid_mask(length: int, lengths: Tensor | None, like: Tensor) -> Tensor | None:
    """``[B, 1, T]`` mask of valid samples for padded batches (None when nothing is padded)."""
    if lengths is None:
        return None
    steps = torch.arange(length, device=like.device)
    return (steps < lengths.to(like.device).view(-1, 1, 1)).to(like.dtype)


def zero_mean(x: Tensor, mask: Tensor | None) -> Tensor:
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
    dot, ref_energy, est_energy = _inner_products(est, ref, lengths, True, "pairwise_si_snr")
    return _scale_invariant(dot, ref_energy, est_energy, eps)


def _inner_products(
    est: Tensor, ref: Tensor, lengths: Tensor | None, centre: bool, name: str
) -> tuple[Tensor, Tensor, Tensor]:
    """``<r_k, e_j>`` ``[B, C, C]``, ``||r_k||^2`` ``[B, C, 1]`` and ``||e_j||^2`` ``[B, 1, C]``."""
    if est.shape != ref.shape or est.dim() != 3:
        raise ValueError(
            f"{name}: expected est and ref of equal shape [B, C, T], "
            f"got {tuple(est.shape)} and {tuple(ref.shape)}"
        )
    mask = valid_mask(est.shape[-1], lengths, est)
    if centre:
        est, ref = zero_mean(est, mask), zero_mean(ref, mask)
    elif mask is not None:
        est, ref = est * mask, ref * mask
    dot = torch.bmm(ref, est.transpose(1, 2))  # [B, C_ref, C_est]
    ref_energy = (ref * ref).sum(-1).unsqueeze(-1)  # [B, C_ref, 1]
    est_energy = (est * est).sum(-1).unsqueeze(-2)  # [B, 1, C_est]
    return dot, ref_energy, est_energy


def _scale_invariant(dot: Tensor, ref_energy: Tensor, est_energy: Tensor, eps: float) -> Tensor:
    alpha = dot / (ref_energy + eps)
    target_energy = alpha * alpha * ref_energy
    # Clamp: rounding can leave a hair below zero when est is (almost) a multiple of ref.
    noise_energy = (est_energy - 2 * alpha * dot + target_energy).clamp_min(0.0)
    return 10 * torch.log10((target_energy + eps) / (noise_energy + eps))


def pairwise_si_sdr(
    est: Tensor, ref: Tensor, eps: float = EPS, lengths: Tensor | None = None
) -> Tensor:
    """:func:`pairwise_si_snr` without removing the means (SI-SDR as Le Roux et al. define it)."""
    dot, ref_energy, est_energy = _inner_products(est, ref, lengths, False, "pairwise_si_sdr")
    return _scale_invariant(dot, ref_energy, est_energy, eps)


def _error_energy(dot: Tensor, ref_energy: Tensor, est_energy: Tensor) -> Tensor:
    return (ref_energy - 2 * dot + est_energy).clamp_min(0.0)


def pairwise_snr(
    est: Tensor, ref: Tensor, eps: float = EPS, lengths: Tensor | None = None
) -> Tensor:
    """``M[b, k, j] = 10 log10(||r_k||^2 / ||r_k - e_j||^2)`` (eps on both sides), ``[B, C, C]``."""
    dot, ref_energy, est_energy = _inner_products(est, ref, lengths, False, "pairwise_snr")
    error = _error_energy(dot, ref_energy, est_energy)
    return 10 * torch.log10((ref_energy + eps) / (error + eps))


def pairwise_snr_tau(
    est: Tensor, ref: Tensor, eps: float = EPS, lengths: Tensor | None = None
) -> Tensor:
    """SNR with a soft ceiling near :data:`SNR_TAU_CEILING_DB` (see the module docstring)."""
    dot, ref_energy, est_energy = _inner_products(est, ref, lengths, False, "pairwise_snr_tau")
    tau = 10 ** (-SNR_TAU_CEILING_DB / 10)
    error = _error_energy(dot, ref_energy, est_energy)
    return 10 * torch.log10((ref_energy + eps) / (error + tau * ref_energy + eps))
