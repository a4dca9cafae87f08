"""Learning-rate annealing over the run's budget, whichever bound ends it.

Why: a run bounded by wall-clock minutes (the demo, a cluster job's time limit) or by a step
count never lets ReduceLROnPlateau act when validation is still improving at the end, so the
final weights are those of a high learning rate. Annealing to ``min_lr`` as the budget runs out
gains the last part of the loss that a constant rate leaves on the table. The *progress* through
the budget is the largest of the fractions of epochs, steps and minutes spent; under DDP the
minutes are the ranks' mean (agreed in the step's all-reduce), so every rank sets the same rate.
"""

from __future__ import annotations

import math


def budget_progress(
    *,
    epoch_fraction: float,
    step: int,
    max_steps: int | None,
    seconds: float,
    max_minutes: float | None,
) -> float:
    """The share of the run's budget spent, in [0, 1]: the nearest bound decides."""
    parts = [epoch_fraction]
    if max_steps:
        parts.append(step / max_steps)
    if max_minutes:
        parts.append(seconds / (max_minutes * 60))
    return min(1.0, max(0.0, *parts))


def cosine_factor(progress: float, step: int, warmup_steps: int, floor: float) -> float:
    """Multiplier of the base rate: linear warm-up over ``warmup_steps``, then a half cosine from
    1 down to ``floor`` (= min_lr / lr) at the end of the budget."""
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    cosine = floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return warm * cosine
