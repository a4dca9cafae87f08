"""Trainer and optimiser settings. Field names and defaults of the robust step follow SpeechBrain's
separation recipes (``threshold_byloss``, ``threshold``, ``clip_grad_norm``, ``loss_upper_lim``...) so
users moving over recognise them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Precision = Literal["fp32", "fp16", "bf16"]


@dataclass
class TrainConfig:
    # --- the robust step (seed names and defaults) ---
    threshold_byloss: bool = True
    # the loss (sepkit/losses/objective.py): si_snr | si_sdr | snr | snr_tau, or
    # 'package.module:function' (a pairwise score in dB, higher is better), under PIT
    loss: str = "si_snr"
    # in the loss's units: dB, negated, for every built-in loss (-30 keeps the examples separated
    # worse than 30 dB; the better ones are left out of the mean)
    threshold: float = -30.0
    clip_grad_norm: float = 5.0  # negative disables clipping
    loss_upper_lim: float = 999999.0  # a step whose loss is above this is skipped
    # stop (checkpoint, error, non-zero exit) after this many training batches *in a row* were
    # skipped without an update; null = never (sepkit/training/patience.py)
    nonfinite_patience: int | None = 100
    save_audio: bool = False
    n_audio_to_save: int | None = None  # None = all test examples
    # test and separate with the estimate averaged over this many sub-frame shifts of the input
    # (sepkit/evaluation/shift_ensemble.py), for N times the inference cost; validation stays
    # single-pass (it runs every epoch, inside the training budget). 1 = off
    test_shifts: int = 1
    precision: Precision = "fp32"
    grad_accumulation: int = 1
    # --- PIT ---
    pit_method: Literal["auto", "exhaustive", "hungarian"] = "auto"
    # validate, test and separate with an exponential moving average of the weights (e.g.
    # 0.999: about the last 1000 updates, once past the warm-up: until update ~9000 the average
    # spans the last ~1/9 of the updates); None = the weights as trained (sepkit/training/ema.py)
    ema_decay: float | None = None
    # --- how long ---
    epochs: int = 10
    max_steps: int | None = None  # optimiser updates (skipped batches do not count), across epochs
    max_minutes: float | None = None  # wall-clock budget of the training loop (resumes count on)
    # --- schedule and stopping ---
    # plateau: halve on a validation plateau; cosine: anneal to min_lr over the run's budget
    # (epochs, max_steps or max_minutes, whichever ends first; see training/schedule.py)
    lr_scheduler: Literal["none", "plateau", "cosine"] = "plateau"
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    min_lr: float = 1e-6
    warmup_steps: int = 0  # cosine: linear warm-up over the first optimiser updates
    early_stopping_patience: int | None = None  # epochs without validation improvement
    # --- checkpoints and logging ---
    checkpoint_every_steps: int | None = None
    checkpoint_every_minutes: float | None = 10.0
    keep_best: int = 2  # best-N checkpoints by validation loss, plus the latest
    # evaluate and separate with the mean weights of the K best checkpoints (checkpoints/
    # averaged.pt); 1 = the best checkpoint alone
    average_best: int = 1
    log_every: int = 50  # flush metrics.csv every N steps
    progress_bar: bool = True
    device: str = "auto"  # auto | cpu | cuda | cuda:N

    def validate(self) -> None:
        if self.grad_accumulation < 1:
            raise ValueError("train.grad_accumulation: must be >= 1")
        if self.n_audio_to_save is not None and self.n_audio_to_save < 0:
            raise ValueError("train.n_audio_to_save: must be >= 0 or null")
        if self.test_shifts < 1:
            raise ValueError("train.test_shifts: must be >= 1 (1 = a single pass)")
        if self.epochs < 1:
            raise ValueError("train.epochs: must be >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError("train.max_steps: must be >= 1 or null")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError("train.max_minutes: must be > 0 or null")
        if self.nonfinite_patience is not None and self.nonfinite_patience < 1:
            raise ValueError("train.nonfinite_patience: must be >= 1 or null (never stop)")
        if self.warmup_steps < 0:
            raise ValueError("train.warmup_steps: must be >= 0")
        if self.keep_best < 0:
            raise ValueError("train.keep_best: must be >= 0")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError("train.ema_decay: must be in (0, 1), or null for no averaging")
        if self.average_best < 1:
            raise ValueError("train.average_best: must be >= 1 (1 = no averaging)")
        if not 0 < self.plateau_factor < 1:
            raise ValueError("train.plateau_factor: must be in (0, 1)")


@dataclass
class OptimConfig:
    name: Literal["adam", "adamw"] = "adam"
    lr: float = 1.5e-4  # SepFormer's published learning rate
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)

    def validate(self) -> None:
        if self.lr <= 0:
            raise ValueError("optim.lr: must be positive")
