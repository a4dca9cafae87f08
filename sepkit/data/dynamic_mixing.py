"""Dynamic mixing: new training mixtures every epoch from the corpus's single-speaker sources.

Why: a static corpus shows the model the same few thousand speaker pairs, gains and alignments
every epoch; remixing gives a fresh combination each time and is the standard way (SepFormer,
WaveSplit) to push SI-SNRi up on wsj0-2mix. Speakers are drawn *without replacement within a
mixture* (never the same speaker, nor two speakers of one voice (``Record.voices``), in one
mixture), each with probability proportional to its number of source files, so remixing keeps the
corpus's own balance (of genders, for one) instead of over-drawing speakers with few utterances.

The level convention is wsj0-2mix's: every source is brought to the same *active* speech level
(:data:`LEVEL`, pauses excluded), then the sources get relative gains uniform in ``±gain_db``
around their mean, so two speakers differ by 0-``gain_db`` dB (0-5 dB by default) with either one
the louder. One factor for everything then keeps the mixture's peak below full scale. Fixed
validation and test mixtures (:mod:`sepkit.data.prepare`) are made by the same code.

Crops of real recordings should hold speech, not the pauses between sentences: a crop is drawn up
to :data:`CROP_TRIES` times and the first whose share of speech frames reaches
:data:`MIN_SPEECH_SHARE` is kept (else the most active one). All draws come from the per-example
generator (see :mod:`sepkit.data.augment`), so a given (seed, epoch, index) always gives the same
mixture.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from sepkit.data.audio import active_rms, change_speed, speech_share
from sepkit.data.augment import speed_factor
from sepkit.data.corpus import Record
from sepkit.data.errors import DataError

LEVEL = 10 ** (-25.0 / 20)  # active speech level of each source before gains
CROP_TRIES = 4
MIN_SPEECH_SHARE = 0.6


def _read(path: Path, start: int = 0, stop: int | None = None) -> np.ndarray:
    data, _ = sf.read(str(path), start=start, stop=stop, dtype="float32", always_2d=False)
    return np.asarray(data, dtype=np.float32)


def active_crop(
    rng: np.random.Generator,
    frames: int,
    need: int,
    read: Callable[[int, int], np.ndarray],
    level: float,
    rate: int,
) -> np.ndarray:
    """``need`` samples of a ``frames``-long signal that hold speech, read through ``read``.

    ``level`` is the whole signal's active RMS: a crop's frames count as speech when they come
    within 20 dB of it, so a crop of a pause does not pass for speech by being quiet everywhere.
    """
    if frames <= need:
        return read(0, frames)
    best, best_share = np.zeros(0, np.float32), -1.0
    for _ in range(CROP_TRIES):
        start = int(rng.integers(0, frames - need + 1))
        x = read(start, start + need)
        share = speech_share(x, rate, level)
        if share > best_share:
            best, best_share = x, share
        if share >= MIN_SPEECH_SHARE:
            break
    return best


def mix_at_levels(
    rng: np.random.Generator,
    signals: Sequence[np.ndarray],
    rate: int,
    gain_db: float,
    length: int,
    *,
    random_polarity: bool = False,
) -> np.ndarray:
    """``sources [C, length]``: ``signals`` at one active level with random relative gains
    (module docstring), each placed at a random offset when shorter than ``length``.

    ``random_polarity`` flips each source's sign with probability 1/2: real recordings come in
    either polarity, and a model that never saw one learns to rely on the other.
    """
    rel = [0.0] + [float(rng.uniform(-gain_db, gain_db)) for _ in signals[1:]]
    mean = sum(rel) / len(rel)
    sources = np.zeros((len(signals), length), dtype=np.float32)
    for k, s in enumerate(signals):
        s = s[:length]
        off = int(rng.integers(0, length - len(s) + 1))
        gain = LEVEL / active_rms(s, rate) * 10 ** ((rel[k] - mean) / 20)
        if random_polarity and rng.random() < 0.5:
            gain = -gain
        sources[k, off : off + len(s)] = s * gain
    return sources


class DynamicMixer:
    """Pool of (speaker -> source files) and the recipe that mixes C of them.

    Speaker IDs come from the records (our manifest columns, wsj0-mix / LibriMix file names). When
    a layout does not name speakers, each source file counts as its own speaker: sources are then
    distinct *utterances*, which may occasionally share a speaker. Where records group speakers
    into voices, the pool holds voices: a file's chance of being drawn is unchanged (a voice is
    drawn in proportion to its files), but a mixture never holds one voice twice.
    """

    def __init__(
        self,
        records: Sequence[Record],
        frames: dict[Path, int],
        num_spks: int,
        sample_rate: int,
        *,
        gain_db: float = 5.0,
        speed_range: tuple[float, float] | None = None,
        random_polarity: bool = False,
    ) -> None:
        pool: dict[str, list[tuple[Path, int]]] = {}
        for r in records:
            for k, src in enumerate(r.sources):
                spk = r.speakers[k] if len(r.speakers) == len(r.sources) else f"{r.id}/s{k + 1}"
                spk = r.voices[k] if len(r.voices) == len(r.sources) else spk
                pool.setdefault(spk, []).append((src, frames[src]))
        self.speakers = sorted(pool)
        self.pool = [pool[s] for s in self.speakers]
        counts = np.array([len(files) for files in self.pool], dtype=np.float64)
        self.weights = counts / counts.sum()
        if len(self.speakers) < num_spks:
            raise DataError(
                f"dynamic mixing needs at least {num_spks} speakers, the corpus has "
                f"{len(self.speakers)}; set data.dynamic_mixing=false"
            )
        self.num_spks = num_spks
        self.rate = sample_rate
        self.gain_db = gain_db
        self.speed_range = speed_range
        self.random_polarity = random_polarity
        self._levels: dict[Path, float] = {}  # active RMS per file, measured on first use

    def _level(self, path: Path) -> float:
        level = self._levels.get(path)
        if level is None:
            level = self._levels[path] = active_rms(_read(path), self.rate)
        return level

    def _source(
        self, rng: np.random.Generator, path: Path, frames: int, target: int | None
    ) -> np.ndarray:
        factor = 1.0
        if self.speed_range is not None:
            factor = speed_factor(rng, *self.speed_range)
        if target is None:
            x = _read(path)
        else:
            need = min(frames, math.ceil(target * factor) + 8)
            x = active_crop(
                rng, frames, need, lambda a, b: _read(path, a, b), self._level(path), self.rate
            )
        if factor != 1.0:
            x = change_speed(x, factor, self.rate)
        return x if target is None else x[:target]

    def make(self, rng: np.random.Generator, target: int | None) -> tuple[np.ndarray, list[str]]:
        """``(sources [C, T], speaker or voice IDs)``: a new clean mixture; ``target`` caps T.
        Noise, when configured, is added afterwards from its own generator
        (:meth:`sepkit.data.noise.NoisePool.add`), so clean mixtures draw what they always drew."""
        chosen = rng.choice(len(self.speakers), size=self.num_spks, replace=False, p=self.weights)
        signals = []
        for c in chosen:
            path, frames = self.pool[int(c)][int(rng.integers(len(self.pool[int(c)])))]
            signals.append(self._source(rng, path, frames, target))
        # "min" alignment when cropping is off; with a target, shorter sources are zero-padded at a
        # random position inside a mixture as long as the longest source (at most the target).
        length = min(len(s) for s in signals) if target is None else max(len(s) for s in signals)
        sources = mix_at_levels(
            rng, signals, self.rate, self.gain_db, length, random_polarity=self.random_polarity
        )
        peak = float(np.abs(sources.sum(axis=0)).max())
        if peak > 0.99:  # one factor for everything keeps mix == sum of sources
            sources *= 0.99 / peak
        speakers = [self.speakers[int(c)] for c in chosen]
        return sources, speakers
