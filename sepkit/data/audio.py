"""Small signal helpers shared by the generator and the loader (numpy only, no torch).

Resampling always goes through a library (scipy's polyphase filter for exact rational ratios such
as 22050 -> 8000 = 160/441; soxr for arbitrary speed-perturbation factors), never hand-written.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import soxr

FRAME_S = 0.02  # analysis frame for activity detection (20 ms)


def resample_exact(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling by the exact rational ratio ``rate_out / rate_in`` (float32 out)."""
    if rate_in == rate_out:
        return x.astype(np.float32, copy=False)
    ratio = Fraction(rate_out, rate_in)
    from scipy.signal import resample_poly  # lazy: scipy.signal costs ~1 s of CLI start-up

    y = resample_poly(x.astype(np.float64), ratio.numerator, ratio.denominator, axis=-1)
    return y.astype(np.float32)


def change_speed(x: np.ndarray, factor: float, rate: int) -> np.ndarray:
    """Play ``x`` ``factor`` times faster (length / factor, pitch shifted as by tape speed).

    ``x`` is ``[T]`` or ``[T, channels]``; soxr keeps channels aligned, so a mixture and its sources
    perturbed together still add up.
    """
    if factor == 1.0:
        return x
    y = soxr.resample(x, rate * factor, rate, quality="HQ")
    return np.ascontiguousarray(y, dtype=np.float32)


def frame_energy_db(x: np.ndarray, rate: int) -> np.ndarray:
    """Per-frame energy (dB re full scale) of a mono signal, 20 ms frames (last partial dropped)."""
    n = max(1, int(FRAME_S * rate))
    frames = len(x) // n
    if frames == 0:
        return np.full(1, -200.0)
    e = np.mean(np.square(x[: frames * n].reshape(frames, n), dtype=np.float64), axis=1)
    return 10.0 * np.log10(e + 1e-20)


def activity(x: np.ndarray, rate: int, rel_db: float = -35.0) -> np.ndarray:
    """Boolean per-frame speech activity: frames within ``rel_db`` of the loudest frame."""
    e = frame_energy_db(x, rate)
    return e > (e.max() + rel_db)


def active_rms(x: np.ndarray, rate: int) -> float:
    """RMS over active frames only (a crude ITU P.56 active level) so pauses do not lower it."""
    n = max(1, int(FRAME_S * rate))
    mask = activity(x, rate)
    frames = len(x) // n
    if frames == 0 or not mask.any():
        return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-20))
    sel = x[: frames * n].reshape(frames, n)[mask]
    return float(np.sqrt(np.mean(np.square(sel, dtype=np.float64)) + 1e-20))


def speech_share(x: np.ndarray, rate: int, level: float, below_db: float = 20.0) -> float:
    """Share of ``x``'s 20 ms frames whose energy comes within ``below_db`` of ``level`` (an active
    RMS measured on the whole recording): how much of a crop is speech rather than pause."""
    if len(x) < max(1, int(FRAME_S * rate)):
        return 0.0
    floor_db = 20.0 * np.log10(level + 1e-20) - below_db
    return float(np.mean(frame_energy_db(x, rate) > floor_db))


def trim_silence(x: np.ndarray, rate: int, rel_db: float = -45.0) -> np.ndarray:
    """Drop leading and trailing silent frames (keeps one frame of margin each side)."""
    mask = activity(x, rate, rel_db)
    if not mask.any():
        return x[:0]
    n = max(1, int(FRAME_S * rate))
    idx = np.flatnonzero(mask)
    start = max(0, (idx[0] - 1) * n)
    stop = min(len(x), (idx[-1] + 2) * n)
    return x[start:stop]


def cut_at_pause(x: np.ndarray, rate: int, max_len: int) -> np.ndarray:
    """Shorten ``x`` to at most ``max_len`` samples, cutting in the quietest frame of the last third.

    Cutting in a pause rather than mid-word keeps the utterance natural; a 10 ms fade-out removes
    any click if no pause exists there.
    """
    if len(x) <= max_len:
        return x
    n = max(1, int(FRAME_S * rate))
    e = frame_energy_db(x[:max_len], rate)
    lo = (2 * len(e)) // 3
    cut = (lo + int(np.argmin(e[lo:]))) * n if len(e) > lo else max_len
    cut = max(n, min(cut + n // 2, max_len))
    y = x[:cut].copy()
    fade = min(len(y), int(0.01 * rate))
    if fade > 0:
        y[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=y.dtype)
    return y


def overlap_ratio(sources: np.ndarray, rate: int) -> float:
    """Fraction of speech frames (any source active) in which two or more sources are active."""
    acts = np.stack([activity(s, rate) for s in sources])
    any_active = acts.any(axis=0).sum()
    if any_active == 0:
        return 0.0
    return float((acts.sum(axis=0) >= 2).sum() / any_active)


def colored_noise(rng: np.random.Generator, length: int, slope_db_per_oct: float) -> np.ndarray:
    """Gaussian noise with a power spectrum falling ``slope_db_per_oct`` dB per octave, unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(length))
    f = np.fft.rfftfreq(length)
    f[0] = f[1] if len(f) > 1 else 1.0
    spec *= f ** (slope_db_per_oct / (20.0 * np.log10(2.0)))
    y = np.fft.irfft(spec, n=length)
    return (y / (np.sqrt(np.mean(y**2)) + 1e-12)).astype(np.float32)
