"""Background noise for noisy mixtures (WHAM!-style): ``mix = sum(sources) + noise``.

The targets stay the clean sources; the noise is what a separator (or, with one source, an
enhancer) must learn to leave out. Noise comes from a *pool* of recordings:

* ``shipped``: the four real recordings of :data:`SHIPPED` (Speech Commands' background noise,
  CC BY 4.0, 16 kHz; credited in that folder's README.md), so that a noisy model trains out of the
  box and the product never reads anything outside its own package;
* a folder of the user's noise recordings (any rate; every audio file under it);
* a corpus's own noise tracks (WHAM!'s ``noise/``, Libri2Mix's ``noise_path``) when a training
  split with ``data.use_noise`` is remixed on the fly.

**Held-out noise.** A noise heard in training must not score the test, or the test measures
memorised noise. The shipped and folder pools are split *in time*: each recording's first 80 %
is training noise, the next 10 % validation and the last 10 % test (:data:`SPLITS`), so every
recording (every kind of noise) appears in each split while no sample is in two. A crop never
leaves its segment, resampling context included.

**SNR convention (WHAM!'s).** The noise is scaled so that the power of the *loudest* source over
the mixture's samples, divided by the noise's power over the same samples, is the drawn SNR:
``snr_db = 10 log10(max_k mean(s_k^2) / mean(n^2))``, uniform in ``noise_snr_db`` (WHAM! draws it
from [-6, +3] dB, the default). Plain mean power, not an active level: the convention of WHAM!'s
own scripts, and a number anyone can recompute from the example. If the noisy mixture would clip,
sources and noise are scaled by one factor (the SNR is unchanged).

**Rates and channels.** Noise recordings are treated like speech in ``sepkit prepare``: several
channels are averaged, another sample rate is resampled (scipy's polyphase filter) crop by crop,
with context from inside the segment, so a 16 kHz pool serves an 8 kHz corpus.

All draws come from the generator the caller passes (one per example, :mod:`sepkit.data.augment`):
the SNR first, then the recording and the offset. A given (seed, epoch, index) always gives the
same noise, and a resumed run the same mixtures.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf

from sepkit.data.audio import resample_exact
from sepkit.data.errors import DataError, Problem, format_problems
from sepkit.data.recordings import AUDIO_SUFFIXES

#: The noise recordings that ship in the wheel (see its README.md for the credit).
SHIPPED = Path(__file__).resolve().parents[1] / "corpora" / "noise"
#: Part of every pooled recording each split hears, as fractions of its length, in time order.
SPLITS: dict[str, tuple[float, float]] = {
    "train": (0.0, 0.8),
    "valid": (0.8, 0.9),
    "test": (0.9, 1.0),
}
#: A segment quieter than this (plain RMS, dBFS) holds no noise to scale.
SILENT_DB = -70.0
#: A crop below this power (-100 dBFS) is digital silence: scaling it to an SNR would blow it up.
MIN_CROP_POWER = 1e-10
CROP_TRIES = 4
#: Resampling context read on each side of a crop (input samples, rounded up to whole periods).
CONTEXT = 64


@dataclass(frozen=True)
class NoiseSegment:
    """The part ``[start, stop)`` (in the file's own frames) of one recording a split may use."""

    path: Path
    rate: int  # the file's rate
    start: int
    stop: int
    frames: int  # its length at the pool's rate


@dataclass(frozen=True)
class NoisyMix:
    """``mix [T]`` = ``sources.sum(0) + noise``; ``snr_db`` as drawn; where the noise came from
    (file frames ``[start, stop)`` of ``segment.path``, context excluded); ``scale``, the factor
    that kept the mixture from clipping (1 if none), for signals derived from the sources (the
    targets of a reverberant mixture) to follow."""

    mix: np.ndarray
    sources: np.ndarray
    noise: np.ndarray
    snr_db: float
    segment: NoiseSegment
    start: int
    stop: int
    scale: float = 1.0


def segment_bounds(frames: int, split: str) -> tuple[int, int]:
    """``[start, stop)`` of a ``frames``-long recording that ``split`` may hear."""
    lo, hi = SPLITS[split]
    return int(frames * lo), int(frames * hi)


def _ratio(rate: int, file_rate: int) -> tuple[int, int]:
    ratio = Fraction(rate, file_rate)
    return ratio.numerator, ratio.denominator


def usable_frames(start: int, stop: int, file_rate: int, rate: int) -> int:
    """Samples at ``rate`` in file frames ``[start, stop)``, counted from the first frame where
    the two sample grids meet (where :meth:`NoisePool.crop` may start)."""
    up, down = _ratio(rate, file_rate)
    first = -(-start // down) * down
    return max(0, (stop - first) * up // down)


def noise_files(where: str, key: str = "data.noise") -> list[Path]:
    """The recordings a pool setting names: ``shipped`` or a folder (searched recursively)."""
    folder = SHIPPED if where == "shipped" else Path(where).expanduser()
    if not folder.is_dir():
        raise DataError(
            f"{key}={where}: no such folder; use none, shipped (the noises that ship with sepkit) "
            "or a folder of noise recordings"
        )
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise DataError(
            f"{key}={where}: {folder} holds no audio files ({', '.join(AUDIO_SUFFIXES)})"
        )
    return files


def fingerprint(paths: Iterable[Path]) -> str:
    """Hash of every file's path, size and modification time (a changed pool rebuilds a corpus)."""
    digest = hashlib.sha256()
    for p in paths:
        st = p.stat()
        digest.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _check(path: Path, split: str, rate: int, need: int | None) -> NoiseSegment | Problem:
    """Read one recording whole: its segment for ``split``, or what makes it unusable."""
    try:
        data, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        return Problem(path.name, str(path), f"unreadable: not audio ({err})")
    if not np.isfinite(data).all():
        return Problem(path.name, str(path), "non-finite samples (NaN or inf)")
    start, stop = segment_bounds(data.shape[0], split)
    frames = usable_frames(start, stop, int(file_rate), rate)
    part = f"its {split} part"
    if need is not None and frames < need:
        return Problem(
            path.name,
            str(path),
            f"too short: {part} lasts {frames} samples at {rate} Hz ({frames / rate:.2f} s), "
            f"a mixture needs {need} ({need / rate:.2f} s); use longer noise recordings",
        )
    x = data[start:stop].mean(axis=1)
    level = 10 * math.log10(float(np.mean(np.square(x, dtype=np.float64))) + 1e-30)
    if level < SILENT_DB:
        return Problem(path.name, str(path), f"silent: {part} has a level of {level:.0f} dBFS")
    return NoiseSegment(path, int(file_rate), start, stop, frames)


class NoisePool:
    """Noise segments at one rate, and the SNR range they are added at (module docstring)."""

    def __init__(
        self, segments: Sequence[NoiseSegment], rate: int, snr_db: tuple[float, float]
    ) -> None:
        if not segments:
            raise DataError("noise pool: no usable noise recordings")
        # Sorted by length, so that the recordings long enough for a mixture are a suffix.
        self.segments = sorted(segments, key=lambda s: (s.frames, str(s.path), s.start))
        self.frames = [s.frames for s in self.segments]
        self.rate = rate
        self.snr_db = (float(snr_db[0]), float(snr_db[1]))

    @classmethod
    def load(
        cls,
        where: str,
        split: str,
        rate: int,
        snr_db: tuple[float, float],
        *,
        need: int | None = None,
        key: str = "data.noise",
    ) -> NoisePool:
        """The ``split`` segments of the recordings ``where`` names, every file checked first:
        unreadable, NaN, silent or (given ``need``, the mixture length) too short files are all
        listed in one :class:`DataError` naming ``key``."""
        files = noise_files(where, key)
        with ThreadPoolExecutor(max_workers=4) as pool:  # libsndfile decodes without the GIL
            checked = list(pool.map(lambda p: _check(p, split, rate, need), files))
        problems = [c for c in checked if isinstance(c, Problem)]
        if problems:
            raise DataError(
                format_problems(
                    f"{key}={where}: {len(problems)} of {len(files)} noise recordings cannot be "
                    "used (nothing was written):",
                    problems,
                ),
                problems,
            )
        return cls([c for c in checked if isinstance(c, NoiseSegment)], rate, snr_db)

    def crop(self, rng: np.random.Generator, length: int) -> tuple[np.ndarray, NoiseSegment, int]:
        """``length`` samples at the pool's rate from a random segment long enough for them:
        ``(noise, segment, first file frame)``.

        A resampled crop starts on a frame where the file's and the pool's sample grids meet, so
        it is exactly the matching stretch of the whole recording resampled (context included).
        """
        first = bisect.bisect_left(self.frames, length)
        if first == len(self.segments):
            longest = self.segments[-1]
            raise DataError(
                f"{longest.path}: the longest noise recording lasts {longest.frames} samples at "
                f"{self.rate} Hz, a mixture needs {length}; use longer noise recordings (or "
                "shorter mixtures: data.training_signal_len)"
            )
        seg = self.segments[int(rng.integers(first, len(self.segments)))]
        up, down = _ratio(self.rate, seg.rate)
        native = -(-length * down // up)  # file frames the crop spans
        lo, hi = -(-seg.start // down), (seg.stop - native) // down
        start = int(rng.integers(lo, hi + 1)) * down
        if up == down:
            return _read(seg.path, start, start + length), seg, start
        left = min(-(-CONTEXT // down) * down, (start - seg.start) // down * down)
        stop = min(seg.stop, start + native + CONTEXT)
        y = resample_exact(_read(seg.path, start - left, stop), seg.rate, self.rate)
        skip = left * up // down
        return y[skip : skip + length], seg, start

    def add(
        self, rng: np.random.Generator, sources: np.ndarray, mix: np.ndarray | None = None
    ) -> NoisyMix:
        """Noise at a drawn SNR added to ``mix`` (default: the sum of ``sources [C, T]``)."""
        length = sources.shape[-1]
        snr = float(rng.uniform(*self.snr_db))
        loudest = max(float(np.mean(np.square(s, dtype=np.float64))) for s in sources)
        for _ in range(CROP_TRIES):
            n, seg, start = self.crop(rng, length)
            power = float(np.mean(np.square(n, dtype=np.float64)))
            if power >= MIN_CROP_POWER:
                break
        else:
            raise DataError(
                f"{seg.path}: {CROP_TRIES} random crops of {length} samples were all digital "
                "silence; trim the silent stretches out of this noise recording"
            )
        noise = (n * math.sqrt(loudest / (power * 10 ** (snr / 10)))).astype(np.float32)
        clean = sources.sum(axis=0) if mix is None else mix
        noisy = clean + noise
        peak = float(np.abs(noisy).max())
        scale = np.float32(1.0)
        if peak > 0.99:  # one factor for everything keeps the SNR and mix == sum + noise
            scale = np.float32(0.99 / peak)
            sources, noise, noisy = sources * scale, noise * scale, (clean * scale) + noise * scale
        stop = start + -(-length * seg.rate // self.rate)
        return NoisyMix(
            noisy.astype(np.float32), sources, noise, snr, seg, start, stop, float(scale)
        )


def held_out_pools(
    where: str, rate: int, snr_db: tuple[float, float], seconds: float, key: str
) -> dict[str, NoisePool]:
    """The validation and test pools (the held-out parts of each recording) for fixed mixtures of
    ``seconds`` (0 = any length), every file checked; ``{}`` for ``none``."""
    if where == "none":
        return {}
    lo, hi = snr_db
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise DataError(f"{key}-snr-db: need LOW <= HIGH, got {lo:g} {hi:g}")
    need = round(seconds * rate) if seconds > 0 else None
    return {
        split: NoisePool.load(where, split, rate, snr_db, need=need, key=key)
        for split in ("valid", "test")
    }


def _read(path: Path, start: int, stop: int) -> np.ndarray:
    data, _ = sf.read(str(path), start=start, stop=stop, dtype="float32", always_2d=True)
    return np.ascontiguousarray(data.mean(axis=1), dtype=np.float32)
