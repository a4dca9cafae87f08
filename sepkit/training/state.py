"""What a checkpoint holds, and how a run resumes from one exactly."""

from __future__ import annotations

import logging
import math
from collections import Counter
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from sepkit.models.contract import NO_CARD_HELP, spec_of
from sepkit.training import runtime
from sepkit.training.checkpoint import CheckpointError, load_checkpoint
from sepkit.training.core import TrainerCore

log = logging.getLogger(__name__)


#: The trainer's counters, as a checkpoint's ``trainer`` section holds them (with
#: ``skip_reasons``, a Counter stored as a dict). Everything else a checkpoint holds: weights
#: (and EMA), optimiser, scheduler, GradScaler, every rank's RNG state, the run config, the
#: model spec and the sample rate (:meth:`TrainerState.state_dict`).
COUNTERS = (
    "step",
    "updates",
    "epoch",
    "batch_in_epoch",
    "nonfinite_count",
    "best_valid",
    "epochs_without_improvement",
    "train_seconds",
)


class TrainerState(TrainerCore):
    """The trainer's full state as a checkpoint, and resume from the newest loadable one."""

    def state_dict(self, rng_states: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The full training state; ``rng_states``: every rank's (default: this process's)."""
        ema = None
        if self.ema is not None:  # model_state holds the average; resume needs the raw weights
            ema = {**self.ema.state_dict(), "train_model_state": self.module.state_dict()}
        return {
            "model_spec": spec_of(self.module),
            "model_state": self.eval_module.state_dict(),
            "ema": ema,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "trainer": {
                **{name: getattr(self, name) for name in COUNTERS},
                "skip_reasons": dict(self.skip_reasons),
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
        for name in COUNTERS:
            setattr(self, name, counters[name])
        self.skip_reasons = Counter(counters.get("skip_reasons", {}))
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
            self._say_once_if_not_rebuildable(path)
        if self.distributed:
            dist.barrier()
        return path

    def _say_once_if_not_rebuildable(self, path: Path) -> None:
        """Checkpoints of a model without a card resume training, but nothing can rebuild the
        model from them alone (evaluate, separate, init_from): said at the first one."""
        if self._said_no_card or spec_of(self.module) is not None:
            return
        self._said_no_card = True
        log.warning(
            "%s: %s has no sepkit model card: this checkpoint resumes training, but `sepkit "
            "evaluate` and `sepkit separate` cannot rebuild the model from it; %s",
            path,
            type(self.module).__name__,
            NO_CARD_HELP,
        )

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
