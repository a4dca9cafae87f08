"""Patience for a run that only skips: stop, say why, keep the state.

A step guard that skips bad steps can also hide a run that never learns: a wrong sign in
``train.threshold`` filters every example, an all-NaN corpus or a diverged model makes every loss
nonfinite. Such a run would spend its whole budget with no update and exit 0. SpeechBrain stops
after ``nonfinite_patience`` nonfinite losses in total; sepkit counts *consecutive* skipped
batches instead (any skip reason), so a long run with a few bad files never trips while a run that
has stopped learning does, within ``nonfinite_patience`` batches.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Sequence

from sepkit.training.step_guard import (
    ABOVE_UPPER_LIMIT,
    ALL_FILTERED,
    NONFINITE_GRAD,
    NONFINITE_LOSS,
)

#: How many of the streak's latest skipped batches the error names (with their example ids).
SHOWN_BATCHES = 3
#: Example ids shown per skipped batch.
SHOWN_IDS = 8


class TrainingStalledError(RuntimeError):
    """Raised by :meth:`Trainer.fit` when ``nonfinite_patience`` batches in a row were skipped."""


class SkipStreak:
    """Skipped batches since the last optimiser update, with the reasons and example ids."""

    def __init__(self) -> None:
        self.length = 0
        self.reasons: Counter[str] = Counter()
        self.recent: deque[tuple[int, str, list[str]]] = deque(maxlen=SHOWN_BATCHES)

    def skipped(self, step: int, reason: str, example_ids: Sequence[str]) -> None:
        self.length += 1
        self.reasons[reason] += 1
        self.recent.append((step, reason, list(example_ids)))

    def updated(self) -> None:
        self.length = 0
        self.reasons.clear()
        self.recent.clear()

    def message(self, patience: int, threshold: float, upper_limit: float) -> str:
        reasons = ", ".join(f"{reason} x{count}" for reason, count in self.reasons.most_common())
        lines = [
            f"train.nonfinite_patience: {self.length} training batches in a row were skipped "
            f"without an update (patience {patience}); reasons: {reasons}."
        ]
        for reason in self.reasons:
            lines.append(f"- {reason}: {_HINTS[reason].format(t=threshold, u=upper_limit)}")
        lines.append("The latest skipped batches and their examples:")
        for step, reason, ids in self.recent:
            shown = ", ".join(ids[:SHOWN_IDS]) + (" ..." if len(ids) > SHOWN_IDS else "")
            lines.append(f"  step {step}: {reason}: {shown or '(no ids)'}")
        return "\n".join(lines)


_HINTS = {
    ALL_FILTERED: "every example's loss was at or below train.threshold={t}, so none was kept. "
    "The threshold is a negative SI-SNR in dB: -30 keeps examples separated worse than 30 dB; a "
    "positive value filters almost everything (a wrong sign?). Or the model already separates "
    "this data better than the threshold (train.threshold_byloss=false keeps every example).",
    NONFINITE_LOSS: "the loss was NaN/inf. NaN or inf samples in these examples' audio, or a "
    "model whose output diverged (try a lower optim.lr).",
    ABOVE_UPPER_LIMIT: "the loss was above train.loss_upper_lim={u}: broken references in these "
    "examples, or a diverged model.",
    NONFINITE_GRAD: "the gradient was NaN/inf: a diverged model (try a lower optim.lr), or fp16 "
    "overflow the loss scaler could not absorb (try train.precision=bf16 or fp32).",
}
