"""The step guard: which examples count, whether a step happens, and with what loss scale.

One decision per training batch, made from a small statistics vector:
``[sum of kept losses, kept count, nonfinite count, batch size]``.
Under DDP that vector is all-reduced once (a single small collective), so every rank sees the same
numbers and takes the same decision; then it is copied to the host once (the step's one sync before
backward). Nothing else in the guard synchronises the device.

Filtering is a mask (``torch.where``), never a data-dependent slice or early return: the kept-loss
sum always stays connected to every parameter, so a rank whose examples are all filtered still runs
a (zero) backward and DDP's gradient all-reduce cannot hang.

Exactness across ranks: DDP averages gradients over W ranks, so each rank back-propagates
``local_sum * W / global_kept``; the averaged gradient then equals the gradient of the mean loss over
the examples kept on all ranks together (2 ranks x B/2 == 1 rank x B).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor

from sepkit.training.config import TrainConfig

# Reasons a step is skipped, as written to the telemetry.
NONFINITE_LOSS = "nonfinite_loss"
ABOVE_UPPER_LIMIT = "above_upper_limit"
ALL_FILTERED = "all_filtered"
NONFINITE_GRAD = "nonfinite_grad"


@dataclass
class StepDecision:
    take_step: bool
    reason: str  # "" when the step is taken
    loss: float  # mean over kept examples of all ranks; 0.0 when skipped (seed behaviour)
    kept: int  # examples kept, all ranks
    total: int  # examples seen, all ranks
    nonfinite: int  # examples with a NaN/inf loss, all ranks
    backward_scale: float  # multiply the local kept-loss sum by this before backward
    nonfinite_local: list[int] = field(default_factory=list)  # local indices of NaN/inf examples
    flags: list[float] = field(default_factory=list)  # caller's flags, summed over ranks


class StepGuard:
    def __init__(
        self,
        config: TrainConfig,
        process_group: dist.ProcessGroup | None = None,
    ) -> None:
        self.config = config
        self.group = process_group
        self.world_size = dist.get_world_size(process_group) if self._distributed() else 1

    def _distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized()

    def keep_mask(
        self, per_example: Tensor, defined: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(finite [B], keep [B])``: keep = finite and defined and (above threshold when
        filtering). ``defined`` is False for examples whose loss means nothing (no active
        reference, :func:`sepkit.losses.defined_examples`): left out like filtered ones."""
        finite = torch.isfinite(per_example)
        keep = finite if defined is None else finite & defined
        if self.config.threshold_byloss:
            keep = keep & (per_example > self.config.threshold)
        return finite, keep

    def decide(
        self,
        per_example: Tensor,
        flags: Sequence[float] = (),
        defined: Tensor | None = None,
    ) -> tuple[StepDecision, Tensor]:
        """Return the decision and the local kept-loss sum (connected to the graph).

        ``flags`` ride along in the same all-reduce and come back summed over ranks: the loop
        uses them to agree on decisions that depend on each rank's own clock (time budget,
        time-based checkpoints), which would otherwise split the ranks and hang a collective.
        ``defined [B]`` marks the examples whose loss is meaningful (see :meth:`keep_mask`).
        """
        per_example = per_example.float()
        finite, keep = self.keep_mask(per_example, defined)
        local_sum = torch.where(keep, per_example, torch.zeros_like(per_example)).sum()
        stats = torch.stack(
            [
                local_sum.detach().double(),
                keep.sum().double(),
                (~finite).sum().double(),
                torch.full((), float(per_example.numel()), device=per_example.device).double(),
                *(torch.full((), float(f), device=per_example.device).double() for f in flags),
            ]
        )
        if self.world_size > 1:
            dist.all_reduce(stats, group=self.group)  # the one collective of the step
        host = torch.cat([stats, (~finite).double()]).tolist()  # the one host sync
        loss_sum, kept, nonfinite, total = host[0], int(host[1]), int(host[2]), int(host[3])
        reduced_flags = host[4 : 4 + len(flags)]
        nonfinite_local = [i for i, bad in enumerate(host[4 + len(flags) :]) if bad]
        decision = StepDecision(
            take_step=False,
            reason="",
            loss=0.0,
            kept=kept,
            total=total,
            nonfinite=nonfinite,
            backward_scale=0.0,
            nonfinite_local=nonfinite_local,
            flags=reduced_flags,
        )
        if nonfinite:
            decision.reason = NONFINITE_LOSS
        elif kept == 0:
            decision.reason = ALL_FILTERED
        else:
            mean = loss_sum / kept
            if not math.isfinite(mean):
                decision.reason = NONFINITE_LOSS
            elif mean > self.config.loss_upper_lim:
                decision.reason = ABOVE_UPPER_LIMIT
            else:
                decision.take_step = True
                decision.loss = mean
                decision.backward_scale = self.world_size / kept
        return decision, local_sum
