"""Test-time averaging over sub-frame shifts of the input (the "shift trick").

Why: a separator with a strided encoder sees its input through frames that start every ``hop``
samples, and its estimate depends on where those frame boundaries fall. Delaying the input by a
fraction of a hop gives another, equally valid estimate whose errors are partly independent of the
first; their mean is better than either, for N times the inference cost and no training cost
(the gain on the demo is in docs/demo.md).

The estimates of different shifts may list the speakers in a different order, so each one is
put in the order of the running sum (permutation by SI-SNR, as PIT) and given its sign before
it is added. The wrapper knows nothing of a specific model: the hop comes from an
``encoder.stride`` attribute when the model has one (all of sepkit's masking separators do).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sepkit.evaluation.metrics import align_estimates


def encoder_hop(model: nn.Module) -> int | None:
    """The frame hop (samples) of ``model``'s encoder, or ``None`` for a model without one."""
    stride = getattr(getattr(model, "encoder", None), "stride", None)
    return int(stride) if isinstance(stride, int) and stride > 0 else None


def shift_offsets(shifts: int, hop: int | None) -> list[int]:
    """Up to ``shifts`` delays spread evenly over one hop: 2 -> [0, hop/2], 4 -> [0, hop/4, ...].

    A hop has only ``hop`` distinct frame phases, so more shifts than that give ``hop`` delays;
    with no known hop the delays are 0, 1, ... samples.
    """
    if shifts < 1:
        raise ValueError(f"shifts: must be >= 1, got {shifts}")
    span = hop or shifts
    return sorted({i * span // shifts for i in range(shifts)})


class ShiftEnsemble(nn.Module):
    """``mix [B, T] -> est [B, C, T]``: ``model``'s estimate averaged over ``shifts`` delays.

    Wraps the model for evaluation and inference only: it holds no weights of its own (its state
    dict is the model's, under ``model.``), and training goes through the model itself.
    """

    def __init__(self, model: nn.Module, shifts: int, hop: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.offsets = shift_offsets(shifts, hop or encoder_hop(model))

    def forward(self, mix: Tensor) -> Tensor:
        total: Tensor | None = None
        for offset in self.offsets:
            est = self.model(F.pad(mix, (offset, 0)))[..., offset:]
            if total is None:
                total = est
                continue
            aligned = align_estimates(total, est)[0]
            # SI-SNR is blind to sign: a view may return -s where another returns s, and adding
            # those would cancel the speaker. Such an estimate is negated first.
            opposite = (aligned * total).sum(-1, keepdim=True) < 0
            total = total + torch.where(opposite, -aligned, aligned)
        assert total is not None
        return total / len(self.offsets)
