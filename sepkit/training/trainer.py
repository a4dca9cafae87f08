"""The robust, model-agnostic separation trainer.

A model is any ``nn.Module`` mapping ``mix [B, T]`` to ``est [B, C, T]``. One training step
(:meth:`Trainer.fit_batch`):

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
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from sepkit.data.batch import Batch
from sepkit.evaluation.shift_ensemble import ShiftEnsemble
from sepkit.losses import apply_permutation, defined_examples, pit_si_snr
from sepkit.training import runtime
from sepkit.training.checkpoint import CheckpointError, CheckpointManager, load_checkpoint
from sepkit.training.config import TrainConfig
from sepkit.training.ema import WeightEMA
from sepkit.training.patience import SkipStreak, TrainingStalledError
from sepkit.training.schedule import budget_progress, cosine_factor
from sepkit.training.step_guard import NONFINITE_GRAD, NONFINITE_LOSS, StepDecision, StepGuard
from sepkit.training.telemetry import Telemetry

log = logging.getLogger(__name__)

Stage = Literal["valid", "test"]


class Trainer:
    """Drives one model through training, validation and test.

    Args:
        model: ``mix [B, T] -> est [B, C, T]``. Wrapped in DDP automatically when a process group
            is initialised (torchrun).
        optimizer: built over ``model.parameters()``.
        config: the robust-step and loop settings.
        run_dir: where metrics, checkpoints, saved audio and test results go (rank 0 writes);
            ``None`` keeps everything in memory (handy in notebooks and tests).
        sample_rate: of the audio, for saved WAV files and metrics.
        run_config: the resolved run config (a plain dict), stored in checkpoints so a model can
            be evaluated or used for separation from its checkpoint alone.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        config: TrainConfig | None = None,
        *,
        run_dir: str | Path | None = None,
        sample_rate: int = 8000,
        run_config: dict[str, Any] | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        self.config = config or TrainConfig()
        # Python users build TrainConfig by hand: a bad value must fail here, naming the key,
        # not as a ZeroDivisionError deep in the first step.
        self.config.validate()
        self.device = runtime.resolve_device(str(device) if device else self.config.device)
        self.module = model.to(self.device)
        self.optimizer = optimizer
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world_size = dist.get_world_size() if self.distributed else 1
        # The weights validation, test and checkpoints' model_state use (see eval_module); copied
        # before DDP wraps the module and hooks its parameters.
        self.ema = WeightEMA(self.module, self.config.ema_decay) if self.config.ema_decay else None
        self.model: nn.Module = self.module
        if self.distributed:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.module, device_ids=device_ids)
        self.sample_rate = sample_rate
        self.run_config = run_config or {}
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.is_main = self.rank == 0

        precision = self.config.precision
        if precision == "fp16" and self.device.type not in ("cuda", "cpu"):
            raise ValueError(f"train.precision=fp16 is not supported on {self.device.type}")
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=precision == "fp16")
        self.scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau | None = None
        if self.config.lr_scheduler == "plateau":
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer,
                mode="min",
                factor=self.config.plateau_factor,
                patience=self.config.plateau_patience,
                min_lr=self.config.min_lr,
            )
        # The rates the optimiser was built with: the cosine schedule scales these.
        self._base_lrs = [float(group["lr"]) for group in optimizer.param_groups]
        self.guard = StepGuard(self.config)
        self.telemetry = Telemetry(self.run_dir, self.config.log_every, enabled=self.is_main)
        self.checkpoints = (
            CheckpointManager(
                self.run_dir / "checkpoints", self.config.keep_best, self.config.average_best
            )
            if self.run_dir is not None
            else None
        )

        # Counters (all saved in checkpoints).
        self.step = 0  # training batches seen (fit_batch calls), skipped ones included
        self.updates = 0  # optimiser steps actually taken
        self.epoch = 0
        self.batch_in_epoch = 0
        self.nonfinite_count = 0
        self.skip_reasons: Counter[str] = Counter()
        self.skip_streak = SkipStreak()  # skipped batches since the latest update
        self.best_valid: float | None = None
        self.epochs_without_improvement = 0
        self.train_seconds = 0.0
        self.last_grad_norm: float | None = None  # before clipping, of the latest update
        self._loss_scale = 1.0  # GradScaler's scale used by the latest update (telemetry)
        self._micro_index = 0  # position inside a gradient-accumulation cycle
        self._contributing = 0  # micro-batches of this cycle that ran backward
        self._resumed = False
        self._stepped = False  # whether the latest fit_batch made an optimiser update
        # Per-rank clock readings the loop wants agreed across ranks: (time budget spent,
        # time-based checkpoint due). Sent with the step's all-reduce; summed results land in
        # _agreed_flags. Empty outside fit(), so fit_batch alone sends nothing extra.
        self._loop_flags: list[float] = []
        self._agreed_flags: list[float] = []
        self._audio_saved = 0
        self._last_valid: float | None = None  # validation loss not yet written to a checkpoint
        self.test_rows: list[dict[str, Any]] = []
        self.test_metrics: tuple[str, ...] = ("si_snr", "sdr")

    # ================================================================ the training step ==========
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
            with runtime.autocast(self.device, self.config.precision):
                est = self.model(batch.mix)
            sources = batch.sources.float()
            per_example, _ = pit_si_snr(
                est.float(), sources, method=self.config.pit_method, lengths=batch.lengths
            )
            # Examples without an active (non-silent) source have no defined loss: left out.
            defined = defined_examples(sources, lengths=batch.lengths)
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
        self._stepped = False
        if is_update:
            # DDP's hook averaged the gradients only if this micro-batch ran backward.
            grad_norm, clipped, stepped = self._end_cycle(synced=decision.take_step)
            self._stepped = bool(stepped)
            if stepped is False:
                reason = reason or NONFINITE_GRAD
                if decision.take_step:  # not counted above
                    self.nonfinite_count += 1
                    self.skip_reasons[NONFINITE_GRAD] += 1
        else:
            self._micro_index += 1

        self.step += 1
        if reason:
            ids = batch.ids
            if reason == decision.reason == NONFINITE_LOSS:
                ids = [batch.ids[i] for i in decision.nonfinite_local if i < len(batch.ids)]
            self.skip_streak.skipped(self.step, reason, ids)
        elif is_update and self._stepped:
            self.skip_streak.updated()
        self._log_step(batch, decision, reason, grad_norm, clipped, time.perf_counter() - started)
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
        batch: Batch,
        decision: StepDecision,
        reason: str,
        grad_norm: float | None,
        clipped: bool,
        seconds: float,
    ) -> None:
        skipped_ids = [batch.ids[i] for i in decision.nonfinite_local if i < len(batch.ids)]
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

    # ================================================================ evaluation ================
    @torch.no_grad()
    def evaluate_batch(self, batch: Batch, stage: Stage = "valid") -> float:
        """Loss of one batch without gradients; in the test stage also per-utterance metrics and,
        with ``save_audio``, WAV files for at most ``n_audio_to_save`` examples."""
        values = [value for _, value in self._example_losses(batch, stage)]
        return math.fsum(values) / len(values) if values else math.nan

    @torch.no_grad()
    def _example_losses(self, batch: Batch, stage: Stage) -> list[tuple[str, float]]:
        """``(example id, loss)`` of the batch's examples whose loss means something (finite,
        defined).

        Under ``no_grad`` itself, not only through ``evaluate_batch``: ``evaluate`` (every
        validation and test pass) calls it directly, and built an unused autograd graph per batch.
        """
        module = self.eval_module
        if stage == "test" and self.config.test_shifts > 1:
            module = ShiftEnsemble(module, self.config.test_shifts)
        with runtime.eval_mode(module):
            batch = batch.to(self.device)
            with runtime.autocast(self.device, self.config.precision):
                est = module(batch.mix)
            est, sources = est.float(), batch.sources.float()
            per_example, perm = pit_si_snr(
                est, sources, method=self.config.pit_method, lengths=batch.lengths
            )
            if stage == "test":
                self._test_outputs(batch, apply_permutation(est, perm))
            defined = defined_examples(sources, lengths=batch.lengths)
        finite = torch.isfinite(per_example)
        values = per_example[finite & defined]  # an example without active source means nothing
        if not bool(finite.all()):
            bad = [batch.ids[i] for i in (~finite).nonzero().flatten().tolist()]
            log.warning("%s: nonfinite loss for %s; left out of the mean", stage, ", ".join(bad))
        kept = (finite & defined).nonzero().flatten().tolist()
        return list(zip((batch.ids[i] for i in kept), values.tolist(), strict=True))

    def _test_outputs(self, batch: Batch, aligned: Tensor) -> None:
        from sepkit.evaluation.audio import save_example_audio
        from sepkit.evaluation.metrics import utterance_metrics

        limit = self.config.n_audio_to_save
        for i, utt_id in enumerate(batch.ids):
            length = int(batch.lengths[i]) if batch.lengths is not None else batch.mix.shape[-1]
            mix = batch.mix[i, :length].cpu()
            refs = batch.sources[i, :, :length].cpu()
            est = aligned[i, :, :length].cpu()
            row: dict[str, Any] = {"id": utt_id}
            row.update(
                utterance_metrics(mix, refs, est, self.sample_rate, self.test_metrics, utt_id)
            )
            self.test_rows.append(row)
            wants_audio = self.config.save_audio and (limit is None or self._audio_saved < limit)
            if wants_audio and self.is_main and self.run_dir is not None:
                save_example_audio(self.run_dir / "audio", utt_id, mix, refs, est, self.sample_rate)
                self._audio_saved += 1

    def evaluate(self, loader: Iterable[Batch], stage: Stage = "valid") -> float:
        """Mean loss over a loader's examples (nonfinite and undefined ones left out).

        Under DDP each example counts once, by id: a distributed sampler pads the ranks' shares
        to equal length by repeating a few examples, and counting those twice made the
        validation loss (and with it ``best.pt``) depend on the world size. The sum is exactly
        rounded (``math.fsum``), so its order, which differs between 1 and N processes, does not
        matter either.
        """
        losses: list[tuple[str, float]] = []
        for batch in self._progress(loader, desc=stage):
            losses.extend(self._example_losses(batch, stage))
        values = [value for _, value in losses]
        if self.distributed:
            gathered: list[list[tuple[str, float]] | None] = [None] * self.world_size
            dist.all_gather_object(gathered, losses)
            once: dict[str, float] = {}
            for part in gathered:
                for utt_id, value in part or []:
                    once.setdefault(utt_id, value)
            values = list(once.values())
        return math.fsum(values) / len(values) if values else math.nan

    def test(self, loader: Iterable[Batch], metrics: Sequence[str] | None = None) -> dict[str, Any]:
        """Per-utterance metrics over the test set (one pass); on rank 0 with a run directory,
        writes ``test_results.csv`` and ``test_summary.json``. Returns the summary."""
        from sepkit.evaluation.metrics import CORE_METRICS, check_metrics, result_columns
        from sepkit.evaluation.results import summarize, write_results

        self.test_metrics = tuple(check_metrics(metrics or CORE_METRICS))
        self.test_rows = []
        self._audio_saved = 0
        self.evaluate(loader, stage="test")
        rows = self.test_rows
        if self.distributed:
            gathered: list[list[dict[str, Any]] | None] = [None] * self.world_size
            dist.all_gather_object(gathered, rows)
            seen: dict[str, dict[str, Any]] = {}
            for part in gathered:
                for row in part or []:
                    seen.setdefault(row["id"], row)  # padded samplers repeat a few utterances
            rows = list(seen.values())
        rows.sort(key=lambda row: str(row["id"]))
        columns = result_columns(self.test_metrics)
        extra = {"test_shifts": self.config.test_shifts}
        if self.is_main and self.run_dir is not None:
            write_results(self.run_dir, rows, columns, extra)
        self.test_rows = rows
        return {**summarize(rows, columns), **extra}

    # ================================================================ the loop ==================
    def fit(
        self,
        train_loader: Iterable[Batch],
        valid_loader: Iterable[Batch] | None = None,
        epochs: int | None = None,
    ) -> dict[str, Any]:
        """Train until ``epochs``, ``max_steps``, ``max_minutes`` or early stopping; resumes
        automatically from the run directory's newest checkpoint."""
        epochs = epochs or self.config.epochs
        if not self._resumed:
            self.resume()
        budget_hit, stop_reason = self._budget_exhausted()
        if budget_hit:  # e.g. re-running a finished demo: nothing left to do
            epochs = self.epoch
        clock = time.monotonic()
        last_checkpoint = clock
        batches_per_epoch = _length(train_loader)
        train_seconds_at_start = self.train_seconds
        self._anneal(batches_per_epoch, epochs, self.train_seconds)  # where a resume starts
        while self.epoch < epochs:
            self._start_epoch(train_loader)
            budget_hit = False
            bar = self._progress(train_loader, desc=f"epoch {self.epoch + 1}/{epochs}")
            for batch in bar:
                self._loop_flags = [
                    float(self._time_budget_spent()),
                    float(self._checkpoint_time_due(time.monotonic() - last_checkpoint)),
                    self.train_seconds,
                ]
                loss = self.fit_batch(batch)
                self.batch_in_epoch += 1
                now = time.monotonic()
                self.train_seconds = train_seconds_at_start + (now - clock)
                self._check_patience()
                if self.step % 10 == 0 and isinstance(bar, tqdm):
                    # Redrawn with the bar's own updates: a forced redraw in a log file (every
                    # update spaced by mininterval) repeats a stale count ("0/375").
                    bar.set_postfix(
                        loss=f"{loss:.2f}", skipped=self.nonfinite_count, refresh=self._tty
                    )
                # Decisions that depend on clocks use what all ranks agreed in this step.
                time_spent, checkpoint_time = (flag > 0 for flag in self._agreed_flags[:2])
                agreed_seconds = self._agreed_flags[2] / self.world_size
                self._anneal(batches_per_epoch, epochs, agreed_seconds)
                budget_hit, stop_reason = self._step_budget_exhausted()
                if time_spent and not budget_hit:
                    budget_hit, stop_reason = True, "max_minutes"
                steps_due = bool(
                    self.config.checkpoint_every_steps
                    and self.step % self.config.checkpoint_every_steps == 0
                )
                # The loop's last step is checkpointed after validation, just below. Saving it
                # here too would write a pre-validation checkpoint of the same step; a crash
                # between the two would resume from it and validate that step twice.
                loop_ends = budget_hit or self.batch_in_epoch == batches_per_epoch
                if self._micro_index == 0 and (steps_due or checkpoint_time) and not loop_ends:
                    self.save_checkpoint()
                    last_checkpoint = now
                if budget_hit:
                    break
            self._loop_flags = []
            self._finish_partial_cycle()
            if not budget_hit:  # a full epoch: the next one starts from its first batch
                self.epoch += 1
                self.batch_in_epoch = 0
            improved = self._validate(valid_loader)
            self.save_checkpoint()
            last_checkpoint = time.monotonic()
            if budget_hit:
                break
            if self._early_stop(improved):
                stop_reason = "early_stopping"
                break
        self.telemetry.flush()
        return {
            "stop_reason": stop_reason,
            "steps": self.step,
            "updates": self.updates,
            "epochs": self.epoch,
            "nonfinite_count": self.nonfinite_count,
            "skip_reasons": dict(self.skip_reasons),
            "best_valid_loss": self.best_valid,
            "train_seconds": self.train_seconds,
        }

    def _check_patience(self) -> None:
        """Stop a run whose latest ``nonfinite_patience`` batches were all skipped: checkpoint the
        state (so nothing is lost and the skipped examples can be inspected), then raise.

        Every rank takes the same skip decisions (they are agreed in the step's all-reduce), so
        every rank stops at the same batch and meets the checkpoint's barrier."""
        patience = self.config.nonfinite_patience
        if patience is None or self.skip_streak.length < patience or self._micro_index != 0:
            return
        path = self.save_checkpoint()
        message = self.skip_streak.message(
            patience, self.config.threshold, self.config.loss_upper_lim
        )
        if path is not None:
            message += f"\nThe state at this step is saved in {path}."
        raise TrainingStalledError(message)

    def _start_epoch(self, loader: Iterable[Batch]) -> None:
        """Position the data order at (epoch, batch_in_epoch) so a resume continues exactly."""
        sampler: Any = getattr(loader, "sampler", None)
        dataset: Any = getattr(loader, "dataset", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.epoch)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(self.epoch)
        if self.batch_in_epoch:
            batch_size = getattr(loader, "batch_size", None)
            if hasattr(sampler, "set_start") and batch_size:
                sampler.set_start(self.batch_in_epoch * batch_size)
            else:
                raise RuntimeError(
                    "resuming mid-epoch needs a DataLoader with batch_size and a "
                    "sepkit.data.sampler.ResumableSampler (sampler=...); got "
                    f"{type(sampler).__name__}"
                )

    def _anneal(self, batches_per_epoch: int | None, epochs: int, seconds: float) -> None:
        """Set the cosine schedule's rate for the next step from the budget spent so far.

        ``seconds`` must be equal on all ranks (the loop passes the ranks' mean, agreed in the
        step's all-reduce), so every rank applies the same rate."""
        if self.config.lr_scheduler != "cosine":
            return
        within = self.batch_in_epoch / batches_per_epoch if batches_per_epoch else 0.0
        progress = budget_progress(
            epoch_fraction=(self.epoch + within) / epochs,
            step=self.updates,
            max_steps=self.config.max_steps,
            seconds=seconds,
            max_minutes=self.config.max_minutes,
        )
        for group, base in zip(self.optimizer.param_groups, self._base_lrs, strict=True):
            floor = min(1.0, self.config.min_lr / base)
            group["lr"] = base * cosine_factor(
                progress, self.updates, self.config.warmup_steps, floor
            )

    def _budget_exhausted(self) -> tuple[bool, str]:
        budget_hit, reason = self._step_budget_exhausted()
        if not budget_hit and self._time_budget_spent():
            return True, "max_minutes"
        return budget_hit, reason

    def _step_budget_exhausted(self) -> tuple[bool, str]:
        cfg = self.config
        if cfg.max_steps is not None and self.updates >= cfg.max_steps:
            return True, "max_steps"
        return False, "epochs"

    def _time_budget_spent(self) -> bool:
        minutes = self.config.max_minutes
        return minutes is not None and self.train_seconds >= minutes * 60

    def _checkpoint_time_due(self, seconds_since: float) -> bool:
        minutes = self.config.checkpoint_every_minutes
        return bool(minutes and seconds_since >= minutes * 60)

    def _validate(self, loader: Iterable[Batch] | None) -> bool:
        """Validation loss -> LR schedule, best-checkpoint bookkeeping. Returns True if improved."""
        if loader is None:
            return False
        valid_loss = self.evaluate(loader, stage="valid")
        self._last_valid = valid_loss
        if self.scheduler is not None and math.isfinite(valid_loss):
            self.scheduler.step(valid_loss)
        improved = math.isfinite(valid_loss) and (
            self.best_valid is None or valid_loss < self.best_valid
        )
        if improved:
            self.best_valid = valid_loss
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1
        self.telemetry.validation(
            {
                "epoch": self.epoch,
                "step": self.step,
                "valid_loss": valid_loss,
                "valid_si_snr": -valid_loss,
                "lr": self.optimizer.param_groups[0]["lr"],
            }
        )
        if self.is_main:
            log.info("epoch %d step %d: valid loss %.3f", self.epoch, self.step, valid_loss)
        return improved

    def _early_stop(self, improved: bool) -> bool:
        patience = self.config.early_stopping_patience
        return patience is not None and not improved and self.epochs_without_improvement >= patience

    def _progress(self, loader: Iterable[Batch], desc: str) -> Iterator[Batch] | Iterable[Batch]:
        if not (self.config.progress_bar and self.is_main):
            return loader
        return tqdm(
            loader,
            desc=desc,
            leave=False,
            dynamic_ncols=True,
            mininterval=0.5 if self._tty else 30.0,
        )

    @property
    def _tty(self) -> bool:
        """Whether the progress bar draws on a terminal (else into a log: rarely, and in full)."""
        return sys.stderr.isatty()

    def close(self) -> None:
        """Flush ``metrics.csv`` and close TensorBoard's open event file.

        ``fit`` leaves them open, so that a caller can go on stepping or validating. A caller that
        drives ``fit_batch`` itself calls this (or uses the trainer in a ``with`` block) before the
        run directory is moved or deleted, so that the buffered rows and events reach the disk.
        Logging to CSV goes on if the trainer is used again; TensorBoard stays closed.
        """
        self.telemetry.close()

    def __enter__(self) -> Trainer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, error: BaseException | None, *rest: object
    ) -> None:
        if error is None:
            self.close()
            return
        try:  # an error is on its way out: it, not a failed flush, is what the user must see
            self.close()
        except Exception as err:
            if str(err) != str(error):  # not the same full disk said twice
                log.warning("could not flush the run's logs while stopping on an error: %s", err)

    @property
    def eval_module(self) -> nn.Module:
        """What validation and test run, and what checkpoints hand to evaluation and inference:
        the weights' moving average with ``train.ema_decay`` (once it has an update), else the
        model itself."""
        if self.ema is not None and self.ema.updates > 0:
            return self.ema.module
        return self.module

    # ================================================================ checkpoints ===============
    def state_dict(self, rng_states: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The full training state; ``rng_states``: every rank's (default: this process's)."""
        ema = None
        if self.ema is not None:  # model_state holds the average; resume needs the raw weights
            ema = {**self.ema.state_dict(), "train_model_state": self.module.state_dict()}
        return {
            "model_spec": getattr(self.module, "sepkit_spec", None),
            "model_state": self.eval_module.state_dict(),
            "ema": ema,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "trainer": {
                "step": self.step,
                "updates": self.updates,
                "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch,
                "nonfinite_count": self.nonfinite_count,
                "skip_reasons": dict(self.skip_reasons),
                "best_valid": self.best_valid,
                "epochs_without_improvement": self.epochs_without_improvement,
                "train_seconds": self.train_seconds,
            },
            # One RNG state per rank (ranks are seeded seed + rank): see _rank_rng_states.
            "rng": {"per_rank": rng_states or [runtime.rng_state()]},
            "config": self.run_config,
            "sample_rate": self.sample_rate,
        }

    def load_state_dict(self, state: dict[str, Any], source: str = "checkpoint") -> None:
        try:
            ema = state.get("ema")
            self.module.load_state_dict(ema["train_model_state"] if ema else state["model_state"])
            if self.ema is not None:
                # A checkpoint written without EMA: the average starts again from its weights.
                self.ema.load_state_dict(ema or {"updates": 0}, state["model_state"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None and state.get("scheduler") is not None:
                self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
        except (RuntimeError, ValueError, KeyError) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise CheckpointError(
                f"{source}: does not fit this model/optimiser ({first}); a checkpoint of another "
                "model or config? Use a fresh --run-dir, or init_from= to take only compatible weights"
            ) from err
        counters = state["trainer"]
        self.step = counters["step"]
        self.updates = counters["updates"]
        self.epoch = counters["epoch"]
        self.batch_in_epoch = counters["batch_in_epoch"]
        self.nonfinite_count = counters["nonfinite_count"]
        self.skip_reasons = Counter(counters.get("skip_reasons", {}))
        self.best_valid = counters["best_valid"]
        self.epochs_without_improvement = counters["epochs_without_improvement"]
        self.train_seconds = counters["train_seconds"]
        self._restore_rng(state["rng"])
        self._micro_index = 0
        self._contributing = 0
        self.optimizer.zero_grad(set_to_none=True)

    def _rank_rng_states(self) -> list[dict[str, Any]]:
        """Every rank's RNG state, gathered (all ranks must call this together under DDP).

        Each rank draws its own dropout masks and augmentations from its own stream; saving
        rank 0's alone and restoring it everywhere made the ranks draw identical masks after a
        resume, so the resumed run left the uninterrupted one."""
        local = runtime.rng_state()
        if not self.distributed:
            return [local]
        gathered: list[dict[str, Any] | None] = [None] * self.world_size
        dist.all_gather_object(gathered, local)
        return [state for state in gathered if state is not None]

    def _restore_rng(self, saved: dict[str, Any]) -> None:
        """This rank's state from a checkpoint; checkpoints before per-rank states hold one."""
        per_rank = saved.get("per_rank", [saved])
        if self.rank < len(per_rank):
            runtime.set_rng_state(per_rank[self.rank])
            return
        # More ranks than when saved: no exact resume is possible; a stream of this rank's own
        # keeps its dropout masks and augmentations different from the other ranks'.
        runtime.set_rng_state(per_rank[0])
        runtime.seed_everything(int(torch.randint(2**31, ())) + self.rank)
        log.warning(
            "rank %d: the checkpoint holds RNG states of %d ranks; this rank starts a new stream",
            self.rank,
            len(per_rank),
        )

    def save_checkpoint(self) -> Path | None:
        """Checkpoint the full training state (rank 0 writes; other ranks wait for it)."""
        path = None
        rng_states = self._rank_rng_states() if self.checkpoints is not None else None
        if self.checkpoints is not None and self.is_main:
            self.telemetry.flush()
            valid = self._last_valid
            valid = valid if valid is not None and math.isfinite(valid) else None
            path = self.checkpoints.save(self.state_dict(rng_states), self.step, valid)
            self._last_valid = None
        if self.distributed:
            dist.barrier()
        return path

    def restore(self, path: str | Path) -> None:
        """Load a specific training checkpoint (error naming the file if it does not fit)."""
        self.load_state_dict(load_checkpoint(path), source=str(path))
        self._resumed = True
        self.telemetry.truncate_after(self.step)

    def resume(self) -> bool:
        """Resume from the run directory's newest loadable checkpoint, if there is one.

        Under DDP rank 0 picks the file (and alone may move a corrupt one aside) and broadcasts
        its path, so every rank restores the same step.
        """
        self._resumed = True
        if self.checkpoints is None:
            return False
        chosen: list[str | None] = [None]
        state: dict[str, Any] | None = None
        if self.is_main:
            found = self.checkpoints.latest_loadable()
            if found is not None:
                chosen[0], state = str(found[0]), found[1]
        if self.distributed:
            dist.broadcast_object_list(chosen, src=0)
        if chosen[0] is None:
            # Rows a killed earlier launch flushed before its first checkpoint would be written
            # again from step 1: a start from scratch starts the logs from scratch too.
            self.telemetry.truncate_after(0)
            if self.is_main:
                log.info("no checkpoint in %s: training from step 0", self.checkpoints.directory)
            return False
        path = Path(chosen[0])
        self.load_state_dict(state or load_checkpoint(path), source=str(path))
        self.telemetry.truncate_after(self.step)
        if self.is_main:
            log.info("resumed from %s (epoch %d, step %d)", path, self.epoch, self.step)
        return True


def _length(loader: Iterable[Batch]) -> int | None:
    """Batches per epoch, or None for loaders without a length (iterable datasets)."""
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return None
