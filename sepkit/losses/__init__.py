"""Separation losses: pairwise scores, permutation-invariant training, and the objective a
recipe names (``train.loss``).

``pairwise``: score matrices ``[B, C_ref, C_est]`` (SI-SNR, SI-SDR, SNR, thresholded SNR);
``pit``: the permutation search and the silent-reference rule, over any pairwise score;
``objective``: a recipe's loss name -> the per-example loss the trainer optimises.
"""

from sepkit.losses.objective import PAIRWISE_SCORES, Objective, PITObjective, build_objective
from sepkit.losses.pairwise import (
    EPS,
    pairwise_si_sdr,
    pairwise_si_snr,
    pairwise_snr,
    pairwise_snr_tau,
    si_snr,
)
from sepkit.losses.pit import (
    EXHAUSTIVE_MAX_SOURCES,
    PairwiseScore,
    PitMethod,
    active_sources,
    apply_permutation,
    best_permutation,
    defined_examples,
    pit_loss,
    pit_si_snr,
)

__all__ = [
    "EPS",
    "EXHAUSTIVE_MAX_SOURCES",
    "PAIRWISE_SCORES",
    "Objective",
    "PITObjective",
    "PairwiseScore",
    "PitMethod",
    "active_sources",
    "apply_permutation",
    "best_permutation",
    "build_objective",
    "defined_examples",
    "pairwise_si_sdr",
    "pairwise_si_snr",
    "pairwise_snr",
    "pairwise_snr_tau",
    "pit_loss",
    "pit_si_snr",
    "si_snr",
]
