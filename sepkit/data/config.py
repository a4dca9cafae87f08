"""The ``data`` section of a recipe: where the corpus is and how batches are made from it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal


@dataclass
class DataConfig:
    # Corpus root. Layouts: our manifest CSVs, wsj0-2mix folders (tr/cv/tt), LibriMix metadata CSVs.
    root: str = ""
    format: Literal["auto", "manifest", "wsj0-mix", "librimix"] = "auto"
    train_split: str = "train"
    valid_split: str = "valid"
    test_split: str = "test"
    sample_rate: int = 8000
    num_spks: int = 2
    # The corpus's own noise track (WHAM!-style): read mix_both (WHAM!, Libri2Mix) rather than
    # mix_clean, return the noise with each example, and, when the training split is remixed on
    # the fly, draw the training noise from its noise tracks. Targets stay the clean sources.
    use_noise: bool = False
    # Noise added to the mixtures sepkit makes for training (on-the-fly mixing, or on top of a
    # clean fixed training split): none | shipped (the real noises inside the package) | a folder
    # of noise recordings. Training hears the first 80 % of each recording; validation and test
    # mixtures (`sepkit prepare --noise`) use the last 20 % (sepkit/data/noise.py).
    noise: str = "none"
    # SNR of the noise, uniform in [low, high] dB. WHAM!'s convention and range: the power of the
    # loudest source over the noise's power, both over the mixture's samples.
    noise_snr_db: tuple[float, float] = (-6.0, 3.0)
    # Estimate the noise too: it becomes the last source, so the model needs num_spks + 1 outputs.
    noise_as_source: bool = False
    # Random crop of training examples (seed recipe names); validation/test use whole utterances.
    limit_training_signal_len: bool = True
    training_signal_len: int = 32000
    batch_size: int = 4
    eval_batch_size: int = 1
    num_workers: int = 0
    # New mixtures every epoch from the single-speaker sources (train split only). A training split
    # of single-speaker recordings (sepkit prepare's train.csv) is always mixed on the fly.
    dynamic_mixing: bool = False
    # Training mixtures per epoch when mixing on the fly (0 = one per listed example).
    mixtures_per_epoch: int = 0
    # Relative level of the sources, uniform in +-mix_gain_db around their mean active level
    # (wsj0-2mix's convention: two speakers 0-5 dB apart). Dynamic mixing only.
    mix_gain_db: float = 5.0
    # Flip each source's sign with probability 1/2 (dynamic mixing): real recordings come in
    # either polarity.
    random_polarity: bool = False
    speed_perturb: bool = False
    # speed factors are drawn on a 0.01 grid inside the range (soxr's fast path, data/augment.py)
    speed_perturb_range: tuple[float, float] = (0.95, 1.05)
    # What a bad file (missing, corrupt, NaN, wrong rate, silent source...) does at start-up.
    on_bad_example: Literal["error", "skip"] = "error"
    # Use only the first N examples of each split (0 = all); handy for smoke runs.
    max_examples: int = 0

    def validate(self) -> None:
        if self.sample_rate <= 0:
            raise ValueError("data.sample_rate: must be positive")
        if self.num_spks < 1:
            raise ValueError("data.num_spks: must be >= 1")
        if self.batch_size < 1:
            raise ValueError("data.batch_size: must be >= 1")
        if self.eval_batch_size < 1:
            raise ValueError("data.eval_batch_size: must be >= 1")
        if self.training_signal_len < 1:
            raise ValueError("data.training_signal_len: must be positive")
        if self.num_workers < 0:
            raise ValueError("data.num_workers: must be >= 0")
        if self.mixtures_per_epoch < 0:
            raise ValueError("data.mixtures_per_epoch: must be >= 0 (0 = one per listed example)")
        if self.mix_gain_db < 0:
            raise ValueError("data.mix_gain_db: must be >= 0")
        if self.max_examples < 0:
            raise ValueError("data.max_examples: must be >= 0 (0 = all)")
        lo, hi = self.speed_perturb_range
        if not 0 < lo <= hi:
            raise ValueError("data.speed_perturb_range: need 0 < low <= high")
        if not self.noise.strip():
            raise ValueError("data.noise: use none, shipped or a folder of noise recordings")
        lo, hi = self.noise_snr_db
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise ValueError(
                f"data.noise_snr_db: need finite [low, high] with low <= high, got [{lo}, {hi}]"
            )
        if self.noise_as_source and not self.noisy:
            raise ValueError(
                "data.noise_as_source: there is no noise to estimate; set data.noise (shipped or "
                "a folder) or data.use_noise=true"
            )

    @property
    def noisy(self) -> bool:
        """Whether examples carry noise: added by sepkit (data.noise) or the corpus's own."""
        return self.use_noise or self.noise != "none"
