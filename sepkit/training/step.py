"""The robust training step (:meth:`TrainingStep.fit_batch`).

A model is any ``nn.Module`` mapping ``mix [B, T]`` to ``est [B, C, T]``. One step:

1. move the batch to the device; forward under autocast;
2. per-example PIT negative SI-SNR, computed in float32 whatever the autocast dtype;
3. the step guard filters easy examples (loss <= ``threshold``) with a mask and decides, from one
   host sync (one all-reduce under DDP), whether to step: NaN/inf anywhere, a mean above
   ``loss_upper_lim`` or nothing kept -> skip (no backward, no optimiser step, counted in
   ``nonfinite_count``, logged loss 0.0);
4. otherwise backward through the GradScaler; at the update step ``unscale_``, measure the gradient
   norm (post all-reduce under DDP, so identical on every rank), skip if it is NaN/inf (the
   scaler's scale is backed off so fp16 recovers), clip to ``clip_grad_norm``, step;
5. gradients are always zeroed after an update or a skip; the detached loss is returned.

A skipped step leaves parameters, optimiser moments, step counts and the LR schedule untouched.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from typing import Any

import torch
import torch.distributed as dist

from sepkit.data.batch import Batch
from sepkit.training.core import TrainerCore
from sepkit.training.step_guard import NONFINITE_GRAD, NONFINITE_LOSS, StepDecision

log = logging.getLogger(__name__)


class TrainingStep(TrainerCore):
    """The step: forward, loss, guard, backward, update."""

    def fit_batch(self, batch: Batch) -> float:
        """One training batch; returns the detached loss: 0.0 when the loss made the step skip
        (nonfinite, above ``loss_upper_lim``, nothing kept), the finite loss when the gradient did."""
        started = time.perf_counter()
        self.module.train()
        batch = batch.to(self.device, non_blocking=True)
        accumulate = self.config.grad_accumulation
        is_update = self._micro_index == accumulate - 1
        sync_context: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if self.distributed and not is_update:
            sync_context = self.model.no_sync()  # type: ignore[operator]

        with sync_context:
            _, per_example, _, defined = self._separate_and_score(self.model, batch)
            decision, local_sum = self.guard.decide(per_example, self._loop_flags, defined)
            self._agreed_flags = decision.flags
            if decision.take_step:
                self.scaler.scale(local_sum * decision.backward_scale).backward()
                self._contributing += 1
            else:
                self.nonfinite_count += 1
                self.skip_reasons[decision.reason] += 1

        grad_norm: float | None = None
        clipped = False
        reason = decision.reason
        stepped: bool | None = None
        if is_update:
            # DDP's hook averaged the gradients only if this micro-batch ran backward.
            grad_norm, clipped, stepped = self._end_cycle(synced=decision.take_step)
            if stepped is False:
                reason = reason or NONFINITE_GRAD
                if decision.take_step:  # not counted above
                    self.nonfinite_count += 1
                    self.skip_reasons[NONFINITE_GRAD] += 1
        else:
            self._micro_index += 1

        self.step += 1
        nonfinite_ids = [batch.ids[i] for i in decision.nonfinite_local if i < len(batch.ids)]
        if reason:
            ids = nonfinite_ids if reason == decision.reason == NONFINITE_LOSS else batch.ids
            self.skip_streak.skipped(self.step, reason, ids)
        elif stepped:
            self.skip_streak.updated()
        seconds = time.perf_counter() - started
        self._log_step(decision, reason, nonfinite_ids, grad_norm, clipped, seconds)
        return decision.loss

    def _end_cycle(self, synced: bool) -> tuple[float | None, bool, bool | None]:
        """Update from the accumulation cycle's gradients and start a new cycle.

        ``synced``: the gradients are already averaged across ranks (DDP's hook ran). Returns
        (norm before clipping, clipped, stepped); ``stepped`` is None when no micro-batch of the
        cycle ran backward (nothing to update from).
        """
        grad_norm: float | None = None
        clipped = False
        stepped: bool | None = None
        if self._contributing:
            if self.distributed and not synced:
                self._allreduce_grads()
            grad_norm, clipped, stepped = self._update()
        self.optimizer.zero_grad(set_to_none=True)
        self._contributing = 0
        self._micro_index = 0
        return grad_norm, clipped, stepped

    def _finish_partial_cycle(self) -> None:
        """Close an accumulation cycle cut short by the end of an epoch or of the budget: update
        from the micro-batches it has (their mean), as Lightning does at an epoch's end.

        So no cycle spans a checkpoint: every checkpoint is written between cycles and a resume
        is exact without saving pending gradients (which under DDP differ per rank).
        """
        if self._micro_index == 0:
            return
        _, _, stepped = self._end_cycle(synced=False)
        if stepped:
            self.skip_streak.updated()
        elif stepped is False:
            self.nonfinite_count += 1
            self.skip_reasons[NONFINITE_GRAD] += 1
            self.skip_streak.skipped(self.step, NONFINITE_GRAD, [])

    def _update(self) -> tuple[float, bool, bool]:
        """Unscale, check and clip the gradient, step. Returns (norm before clipping, clipped, stepped)."""
        self.scaler.unscale_(self.optimizer)
        grads = [p.grad for p in self.module.parameters() if p.grad is not None]
        if self._contributing > 1:  # mean over the accumulated micro-batches
            torch._foreach_mul_(grads, 1.0 / self._contributing)
        norm = torch.nn.utils.get_total_norm(grads)
        max_norm = self.config.clip_grad_norm
        if max_norm >= 0:
            torch.nn.utils.clip_grads_with_norm_(self.module.parameters(), max_norm, norm)
        total = float(norm)  # the step's second (and last) host sync
        self.last_grad_norm = total
        if self.scaler.is_enabled():
            # Read now, while the queue is drained by the sync above: reading it when logging
            # would be another sync, waiting on the optimiser's kernels.
            self._loss_scale = self.scaler.get_scale()
        if not math.isfinite(total):
            if self.scaler.is_enabled():
                # unscale_ recorded the overflow: update() backs the scale off *and* restarts the
                # growth count, exactly as GradScaler's own step/update pair does. (Setting the
                # scale by hand left the count running, so the scale grew straight back.)
                self.scaler.update()
            return total, False, False
        # Finite norm => no inf/NaN in the grads, so step directly (scaler.step would re-check).
        self.optimizer.step()
        self.scaler.update()
        self.updates += 1
        if self.ema is not None:
            self.ema.update(self.module)
        return total, max_norm >= 0 and total > max_norm, True

    def _allreduce_grads(self) -> None:
        """Average accumulated gradients across ranks when the last micro-batch did no backward."""
        for p in self.module.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad.div_(self.world_size)

    def _log_step(
        self,
        decision: StepDecision,
        reason: str,
        skipped_ids: list[str],
        grad_norm: float | None,
        clipped: bool,
        seconds: float,
    ) -> None:
        if skipped_ids:
            log.warning(
                "step %d: nonfinite loss for %s; step skipped", self.step, ", ".join(skipped_ids)
            )
        self.telemetry.step(
            {
                "step": self.step,
                "epoch": self.epoch,
                "batch": self.batch_in_epoch,
                "loss": decision.loss,
                "kept": decision.kept,
                "total": decision.total,
                "filtered": decision.total - decision.kept - decision.nonfinite,
                "nonfinite": decision.nonfinite,
                "grad_norm": "" if grad_norm is None else grad_norm,
                "clipped": int(clipped),
                "skipped": int(bool(reason)),
                "reason": reason,
                "lr": self.optimizer.param_groups[0]["lr"],
                "loss_scale": self._loss_scale,
                "skipped_ids": " ".join(skipped_ids),
                "seconds": round(seconds, 5),
            }
        )
