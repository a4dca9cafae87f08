"""The ``data`` section of a recipe: where the corpus is and how batches are made from it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from sepkit.data.rooms import RoomConfig

#: Keys of ``data.room`` that say how rooms are pooled, not what a room is.
POOL_KEYS = ("pool_size", "positions", "cache")


@dataclass
class RoomSection:
    """``data.room``: the rooms of reverberant mixing (``data.reverb``), mapped onto
    :class:`sepkit.data.rooms.RoomConfig` (same keys and defaults, the rate is ``data.sample_rate``)
    plus how training rooms are pooled. Literal defaults rather than RoomConfig's own, so that
    loading a recipe imports no numpy; a test keeps the two equal. Lengths in metres, times in s.
    """

    rt60: tuple[float, float] = (0.2, 1.0)
    length: tuple[float, float] = (5.0, 10.0)
    width: tuple[float, float] = (5.0, 10.0)
    height: tuple[float, float] = (3.0, 4.0)
    source_distance: tuple[float, float] = (0.66, 2.0)  # horizontal, microphone to each talker
    source_height: tuple[float, float] = (1.5, 2.0)
    mic_height: tuple[float, float] = (1.2, 1.6)
    wall_margin: float = 0.5
    max_order: int | None = None  # cap on the image order; null = the whole decay
    # What the model is scored against: the direct path (WHAMR!'s anechoic targets) or the
    # direct path and the first early_ms of reflections.
    target: Literal["direct", "early"] = "direct"
    early_ms: float = 50.0
    normalize: bool = True  # unit direct-path gain: the mixer's levels hold for the targets
    # Training rooms simulated once and drawn per example (0 = a new room for every example:
    # WHAMR!'s variety, 0.03-6 s of simulation per example in the data-loader workers).
    pool_size: int = 64
    # Talker positions simulated per pooled room; a mixture takes an ordered subset of num_spks.
    positions: int = 4
    # Where the pool is kept: auto (<root>/.sepkit/rooms/, else ~/.cache/sepkit/rooms/), none
    # (simulated by every run) or a folder (sepkit/data/reverb.py).
    cache: str = "auto"

    def validate(self) -> None:
        """Every key, named as the recipe writes it (``data.room.rt60``); the geometry is checked
        by RoomConfig.validate, imported here only (numpy)."""
        self.room_config(8000).validate(prefix="data.room")
        if self.pool_size < 0:
            raise ValueError("data.room.pool_size: must be >= 0 (0 = a new room per example)")
        if self.positions < 1:
            raise ValueError("data.room.positions: must be >= 1")
        if not self.cache.strip():
            raise ValueError("data.room.cache: use auto, none or a folder")

    def room_config(self, sample_rate: int) -> RoomConfig:
        """The :class:`~sepkit.data.rooms.RoomConfig` this section describes, at ``sample_rate``."""
        from sepkit.data.rooms import RoomConfig

        room = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in POOL_KEYS}
        return RoomConfig(**room, sample_rate=sample_rate)


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
    # Reverberant training mixtures (WHAMR!-style, needs pyroomacoustics: sepkit[rooms]): each
    # on-the-fly mixture's dry sources are played in a simulated room (data.room); the mixture is
    # the sum of the reverberant sources (+ noise, its SNR over the loudest reverberant source);
    # the targets are the room's direct-path (or early) signals. Training only: validation and
    # test read fixed mixtures (sepkit prepare --reverb, or WHAMR!'s own).
    reverb: bool = False
    room: RoomSection = field(default_factory=RoomSection)
    # wsj0-mix folders: the mixture folder to read (empty = mix, mix_clean or mix_both, by
    # data.use_noise), e.g. mix_both_reverb for WHAMR!; and what follows s1, s2 ... in the source
    # folders' names, e.g. _anechoic (WHAMR!'s direct-path targets) or _reverb.
    mix_folder: str = ""
    source_folder_suffix: str = ""
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
        for key in ("mix_folder", "source_folder_suffix"):
            if "/" in getattr(self, key) or "\\" in getattr(self, key):
                raise ValueError(f"data.{key}: a folder name, not a path")
        if self.reverb:  # a recipe's own data.room section was checked when it was read
            self.room.validate()
        if self.reverb and self.num_spks > self.room.positions:
            raise ValueError(
                f"data.room.positions: {self.room.positions} talker positions per room, a "
                f"mixture needs data.num_spks={self.num_spks}"
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
