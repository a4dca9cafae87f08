"""The robust, model-agnostic separation trainer: the training loop.

:class:`Trainer` puts the parts together (``core.py``: state; ``step.py``: the robust step;
``evaluation.py``: validation and test; ``state.py``: checkpoints and resume) and adds the loop:
epochs, budgets (epochs, ``max_steps``, ``max_minutes``), the learning-rate schedule, validation,
time- and step-based checkpoints, patience and early stopping.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm

from sepkit.data.batch import Batch
from sepkit.training.evaluation import Evaluation
from sepkit.training.patience import TrainingStalledError
from sepkit.training.schedule import budget_progress, cosine_factor
from sepkit.training.state import TrainerState
from sepkit.training.step import TrainingStep

log = logging.getLogger(__name__)


class Trainer(TrainingStep, Evaluation, TrainerState):
    """Drives one model through training, validation and test (see :class:`TrainerCore` for the
    arguments)."""

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


def _length(loader: Iterable[Batch]) -> int | None:
    """Batches per epoch, or None for loaders without a length (iterable datasets)."""
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return None
