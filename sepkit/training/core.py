"""The trainer's shared state: what it is built from, what it counts, and what every part uses.

:class:`~sepkit.training.trainer.Trainer` is assembled from parts with one concern each, all over
this state: the robust step (``step.py``), validation and test (``evaluation.py``), checkpoints
and resume (``state.py``), and the loop that drives them (``trainer.py``).
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, Self

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from sepkit.data.batch import Batch
from sepkit.losses import Objective, build_objective, defined_examples
from sepkit.training import distributed, runtime
from sepkit.training.checkpoint import CheckpointManager
from sepkit.training.config import TrainConfig
from sepkit.training.ema import WeightEMA
from sepkit.training.patience import SkipStreak
from sepkit.training.step_guard import StepGuard
from sepkit.training.telemetry import Telemetry

log = logging.getLogger(__name__)

Stage = Literal["valid", "test"]


class TrainerCore:
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
        objective: ``(est, ref, lengths) -> (loss [B], perm [B, C])``, the per-example loss to
            minimise (:mod:`sepkit.losses.objective`); default: ``config.loss`` (PIT SI-SNR).
            The step guard filters and skips on its values, whatever the loss.
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
        objective: Objective | None = None,
    ) -> None:
        self.config = config or TrainConfig()
        # Python users build TrainConfig by hand: a bad value must fail here, naming the key,
        # not as a ZeroDivisionError deep in the first step.
        self.config.validate()
        self.objective: Objective = objective or build_objective(
            self.config.loss, self.config.pit_method
        )
        self.device = runtime.resolve_device(str(device) if device else self.config.device)
        self.module = model.to(self.device)
        self.optimizer = optimizer
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = distributed.rank()
        self.world_size = distributed.world_size()
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
        # Per-rank clock readings the loop wants agreed across ranks: (time budget spent,
        # time-based checkpoint due). Sent with the step's all-reduce; summed results land in
        # _agreed_flags. Empty outside fit(), so fit_batch alone sends nothing extra.
        self._loop_flags: list[float] = []
        self._agreed_flags: list[float] = []
        self._audio_saved = 0
        self._said_no_card = False  # warned that checkpoints cannot rebuild the model alone
        self._last_valid: float | None = None  # validation loss not yet written to a checkpoint
        self.test_rows: list[dict[str, Any]] = []
        self.test_metrics: tuple[str, ...] = ("si_snr", "sdr")

    def _separate_and_score(
        self, module: nn.Module, batch: Batch
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Forward under autocast, then the objective in float32, for training and evaluation
        alike: ``(est, loss [B], perm [B, C], defined [B])``. An example without an active
        (non-silent) source has no defined loss (``defined`` False): it is left out."""
        with runtime.autocast(self.device, self.config.precision):
            est = module(batch.mix)
        est, sources = est.float(), batch.sources.float()
        per_example, perm = self.objective(est, sources, batch.lengths)
        defined = defined_examples(sources, lengths=batch.lengths)
        return est, per_example, perm, defined

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

    def __enter__(self) -> Self:
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
