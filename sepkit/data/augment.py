"""Per-example randomness (crop offsets, speed factors, dynamic mixing) without global RNG.

Every random draw of the pipeline comes from :func:`example_rng`, a generator seeded from
``(seed, epoch, index, stream)``. Global RNG state differs between data-loader workers and is lost
on a crash; a pure function of the example's coordinates gives the same example whatever the number
of workers, and again after a mid-epoch resume (the sampler replays the same indices).
"""

from __future__ import annotations

import numpy as np

from sepkit.data.audio import change_speed

#: Independent streams per example, so adding one kind of randomness does not shift the others.
STREAM_CROP, STREAM_SPEED, STREAM_MIX = 1, 2, 3


def example_rng(seed: int, epoch: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed & 0xFFFFFFFF, epoch, index, stream])


def crop_window(rng: np.random.Generator, length: int, target: int) -> tuple[int, int]:
    """Random ``[start, stop)`` of ``target`` samples within ``length`` (whole signal if shorter)."""
    if length <= target:
        return 0, length
    start = int(rng.integers(0, length - target + 1))
    return start, start + target


def speed_factor(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high)) if high > low else float(low)


def perturb_speed(tracks: np.ndarray, factor: float, rate: int) -> np.ndarray:
    """``tracks [T, K]`` played ``factor`` times faster, all tracks with the same factor so a
    mixture and its sources stay consistent (resampling is linear)."""
    return change_speed(tracks, factor, rate)
