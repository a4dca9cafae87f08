"""The training objective a recipe names (``train.loss``): a pairwise score under PIT.

An objective maps ``(est [B, C, T], ref [B, C, T], lengths [B] | None)`` to
``(loss [B], perm [B, C])``: one loss per example (lower is better; the step guard filters and
skips on these numbers whatever they are) and the permutation that aligns the estimates with the
references. The trainer takes any such callable; a recipe picks one of :data:`PAIRWISE_SCORES` by
name, or a pairwise score of its own as ``package.module:function``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from sepkit.losses.pairwise import pairwise_si_sdr, pairwise_si_snr, pairwise_snr, pairwise_snr_tau
from sepkit.losses.pit import PairwiseScore, PitMethod, pit_loss
from sepkit.utils.imports import import_object, is_dotted_path

Objective = Callable[[Tensor, Tensor, Tensor | None], tuple[Tensor, Tensor]]

#: The built-in losses by recipe name; each is the negative of the score, in dB.
PAIRWISE_SCORES: dict[str, PairwiseScore] = {
    "si_snr": pairwise_si_snr,
    "si_sdr": pairwise_si_sdr,
    "snr": pairwise_snr,
    "snr_tau": pairwise_snr_tau,
}


@dataclass(frozen=True)
class PITObjective:
    """The negative of ``pairwise`` under permutation-invariant training (:func:`pit_loss`)."""

    pairwise: PairwiseScore
    method: PitMethod = "auto"

    def __call__(
        self, est: Tensor, ref: Tensor, lengths: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        return pit_loss(self.pairwise, est, ref, method=self.method, lengths=lengths)


def build_objective(name: str, method: PitMethod = "auto") -> PITObjective:
    """The objective called ``name`` (``train.loss``): a built-in score or ``module:function``."""
    if name in PAIRWISE_SCORES:
        return PITObjective(PAIRWISE_SCORES[name], method)
    if is_dotted_path(name):
        score = import_object(name, "train.loss")
        if not callable(score):
            raise ValueError(f"train.loss: {name!r} is not a function")
        return PITObjective(score, method)
    choices = ", ".join(PAIRWISE_SCORES)
    raise ValueError(
        f"train.loss: unknown loss {name!r}; one of {choices}, or 'package.module:function' "
        "(a pairwise score [B, C, C] in dB, higher is better)"
    )
