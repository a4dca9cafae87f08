"""Per-example randomness (crop offsets, speed factors, dynamic mixing, noise, rooms) without
global RNG.

Every random draw of the pipeline comes from :func:`example_rng`, a generator seeded from
``(seed, epoch, index, stream)``. Global RNG state differs between data-loader workers and is lost
on a crash; a pure function of the example's coordinates gives the same example whatever the number
of workers, and again after a mid-epoch resume (the sampler replays the same indices).
"""

from __future__ import annotations

import math

import numpy as np

from sepkit.data.audio import change_speed

#: Independent streams per example, so adding one kind of randomness does not shift the others.
STREAM_CROP, STREAM_SPEED, STREAM_MIX, STREAM_NOISE, STREAM_ROOM = 1, 2, 3, 4, 5


def example_rng(seed: int, epoch: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed & 0xFFFFFFFF, epoch, index, stream])


def crop_window(rng: np.random.Generator, length: int, target: int) -> tuple[int, int]:
    """Random ``[start, stop)`` of ``target`` samples within ``length`` (whole signal if shorter)."""
    if length <= target:
        return 0, length
    start = int(rng.integers(0, length - target + 1))
    return start, start + target


#: Speed factors are drawn on this grid. soxr resamples a ratio of small integers (k/100) much
#: faster than an arbitrary one (docs/benchmarks.md), and 31 speeds in 0.85-1.15 are as many as
#: augmentation needs.
SPEED_STEP = 0.01


def speed_factor(rng: np.random.Generator, low: float, high: float) -> float:
    """A speed factor in ``[low, high]``: uniform over the :data:`SPEED_STEP` grid points in the
    range, or over the range itself when it holds none."""
    if high <= low:
        return float(low)
    first = math.ceil(low / SPEED_STEP - 1e-9)
    last = math.floor(high / SPEED_STEP + 1e-9)
    if last < first:
        return float(rng.uniform(low, high))
    return round(int(rng.integers(first, last + 1)) * SPEED_STEP, 6)


def perturb_speed(tracks: np.ndarray, factor: float, rate: int) -> np.ndarray:
    """``tracks [T, K]`` played ``factor`` times faster, all tracks with the same factor so a
    mixture and its sources stay consistent (resampling is linear)."""
    return change_speed(tracks, factor, rate)
