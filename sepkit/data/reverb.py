"""Reverberant mixtures (WHAMR!-style): simulated rooms (:mod:`sepkit.data.rooms`) wired into
on-the-fly training mixtures and ``sepkit prepare --reverb``'s fixed validation and test ones.

**The mixture.** The mixer makes the dry sources at their levels as always; the example's room
(its own random stream, :data:`~sepkit.data.augment.STREAM_ROOM`) plays each source from its
position; the mixture is the sum of the reverberant sources, and the targets are the room's target
signals (direct path, or direct path + early reflections), aligned with the mixture sample for
sample. Nothing else draws from the room stream, so a dry (or noisy) example draws exactly what it
drew before reverberation existed, and a (seed, epoch, index) always gives the same reverberant
example, whatever the data-loader workers, and after a resume.

**SNR with reverberation.** Noise is added at the microphone, after the room: its SNR is measured
against the loudest *reverberant* source, ``10 log10(max_k mean(rev_k^2) / mean(n^2))`` over the
mixture's samples - the signals the microphone records, so the SNR is what a listener of the
mixture hears, and the one number that can be recomputed from the mixture's own tracks. (Against
the direct-path targets the SNR would be a few dB lower, by the reverberant energy.) If the
mixture would clip, mixture, reverberant sources, targets and noise are scaled by one factor.

**Training rooms.** Simulating a room takes 0.03-6 s (RT60 0.2-1 s); a training step, tens of ms.
So training draws from a :class:`~sepkit.data.rooms.RirPool` of ``data.room.pool_size`` rooms,
each with ``positions`` talker positions, a pure function of (room settings, run seed, slot);
``pool_size: 0`` simulates a new room for every example instead (in the data-loader workers).

**Where the pool is cached, and why there.** ``data.room.cache: auto`` keeps it in
``<data.root>/.sepkit/rooms/pool-<hash>.npz`` next to the validation cache, else (a read-only
corpus) ``~/.cache/sepkit/rooms/``; the hash covers everything the pool is a function of, so
runs with the same rooms and seed share one file and any change makes a new one. A run
directory would be private to one run, and every new run would pay the simulation again.
The pool is built in the process that builds the dataset, before any data-loader worker starts:
workers inherit it and never simulate. DDP ranks (and concurrent runs) build the file under an
exclusive ``flock`` on ``pool-<hash>.npz.lock``: the first simulates and writes it atomically
(:func:`sepkit.utils.io.atomic_open`), the others wait and load it; a half-written file can never
be read. A location that cannot be written only costs the simulation (a warning, not an error).

**Held-out rooms.** ``sepkit prepare --reverb`` gives every validation and test mixture a room of
its own, drawn from the streams ``(prepare seed, 0, index, 300 + split)``, while the training pool
draws from ``(run seed, POOL_STREAM, slot)``: independent generators, so no fixed mixture is
scored in a room training heard. Each row records the room (dimensions, RT60, distances).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from sepkit.data.augment import example_rng
from sepkit.data.config import DataConfig
from sepkit.data.errors import DataError
from sepkit.data.noise import NoisePool, NoisyMix
from sepkit.data.rooms import (
    RirPool,
    Room,
    RoomConfig,
    RoomResponses,
    apply_room,
    draw_room,
    require_pyroomacoustics,
    room_impulse_responses,
    simulate,
)

log = logging.getLogger(__name__)

#: Stream offset of the rooms of ``sepkit prepare``'s fixed mixtures (mixing 100+, noise 200+).
HELD_OUT_STREAM = 300
#: Largest peak of a mixture before everything is scaled down by one factor.
PEAK = 0.99


@dataclass(frozen=True)
class ReverbMix:
    """``mix [T]`` = ``reverberant.sum(0)`` (+ ``noise``); ``targets [C, T]``, the room's target
    signals at the mixture's scale; ``noisy``, the noise's draw when there is noise; ``columns``,
    the room as a fixed mixture's CSV records it (:func:`room_columns`)."""

    mix: np.ndarray
    targets: np.ndarray
    reverberant: np.ndarray
    noise: np.ndarray | None
    noisy: NoisyMix | None
    columns: dict[str, Any] = field(default_factory=dict)


def reverberant_mix(
    sources: np.ndarray,
    responses: RoomResponses,
    noise: NoisePool | None = None,
    noise_rng: np.random.Generator | None = None,
) -> ReverbMix:
    """Dry ``sources [C, T]`` through a room, summed, with noise at the microphone when a pool is
    given (its SNR over the loudest reverberant source, module docstring)."""
    reverberant, targets = apply_room(sources, responses)
    if noise is not None:
        if noise_rng is None:
            raise ValueError("reverberant_mix: a noise pool needs its generator")
        noisy = noise.add(noise_rng, reverberant)
        scaled = targets * np.float32(noisy.scale)
        return ReverbMix(noisy.mix, scaled, noisy.sources, noisy.noise, noisy)
    peak = float(np.abs(reverberant.sum(axis=0)).max()) if reverberant.size else 0.0
    if peak > PEAK:  # one factor for everything keeps mix == sum of the reverberant sources
        scale = np.float32(PEAK / peak)
        reverberant, targets = reverberant * scale, targets * scale
    return ReverbMix(reverberant.sum(axis=0), targets, reverberant, None, None)


class TrainingRooms:
    """Where training examples get their rooms: a pool, or a new simulation per example."""

    def __init__(self, cfg: RoomConfig, num_spks: int, pool: RirPool | None) -> None:
        self.cfg, self.num_spks, self.pool = cfg, num_spks, pool

    def draw(self, rng: np.random.Generator) -> RoomResponses:
        """The responses of one example's room, from the example's room generator."""
        if self.pool is not None:
            return self.pool.draw(rng)
        return simulate(rng, self.cfg, self.num_spks)


def training_rooms(cfg: DataConfig, seed: int, root: Path) -> TrainingRooms:
    """The training rooms ``cfg.room`` describes for a run seeded ``seed`` (the pool simulated,
    or loaded from its cache, before this returns)."""
    require_pyroomacoustics()  # the install hint at start-up, not in a worker
    room = cfg.room.room_config(cfg.sample_rate)
    if cfg.room.pool_size == 0:
        return TrainingRooms(room, cfg.num_spks, None)
    pool = RirPool(room, cfg.room.pool_size, cfg.num_spks, seed, positions=cfg.room.positions)
    return TrainingRooms(room, cfg.num_spks, _cached(pool, pool_path(cfg.room.cache, root, pool)))


def pool_path(cache: str, root: Path, pool: RirPool) -> Path | None:
    """The file a pool is cached in (module docstring); None for ``cache: none``."""
    if cache == "none":
        return None
    digest = hashlib.sha256(json.dumps(pool.key(), sort_keys=True).encode()).hexdigest()[:16]
    name = f"pool-{digest}.npz"
    if cache != "auto":
        return Path(cache).expanduser() / name
    if os.access(root, os.W_OK):
        return root / ".sepkit" / "rooms" / name
    return Path.home() / ".cache" / "sepkit" / "rooms" / name


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Wait for an exclusive ``flock`` on ``path``: released by the kernel if the holder dies."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _cached(pool: RirPool, path: Path | None) -> RirPool:
    """``pool`` loaded from ``path``, or simulated and written there (once across processes)."""
    if path is None:
        return _fill(pool)
    try:
        with _exclusive(path.with_name(path.name + ".lock")):
            if path.is_file():
                try:
                    return RirPool.load(
                        path, pool.cfg, pool.size, pool.num_sources, pool.seed,
                        positions=pool.positions,
                    )  # fmt: skip
                except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
                    log.warning("room pool %s is unusable (%s); simulating it again", path, err)
            _fill(pool).save(path)
            log.info("room pool: %d rooms cached in %s", pool.size, path)
    except OSError as err:  # read-only or full disk: the pool is simulated, only not kept
        log.warning("room pool: cannot cache it in %s (%s); it stays in memory", path, err)
        _fill(pool)
    return pool


def _fill(pool: RirPool) -> RirPool:
    start = time.perf_counter()
    pool.fill()
    log.info(
        "room pool: simulated %d rooms x %d positions in %.1f s",
        pool.size, pool.positions, time.perf_counter() - start,
    )  # fmt: skip
    return pool


def held_out_mixture(
    cfg: RoomConfig,
    seed: int,
    index: int,
    split_stream: int,
    sources: np.ndarray,
    noise: NoisePool | None,
    noise_rng: np.random.Generator,
) -> ReverbMix:
    """Fixed mixture ``index`` of a split in its own room (held out from training's pool), with
    the CSV columns that record the room."""
    rng = example_rng(seed, 0, index, HELD_OUT_STREAM + split_stream)
    room = draw_room(rng, cfg, sources.shape[0])
    responses = room_impulse_responses(
        room, cfg.sample_rate, target=cfg.target, early_ms=cfg.early_ms, normalize=cfg.normalize
    )
    return replace(
        reverberant_mix(sources, responses, noise, noise_rng), columns=room_columns(room)
    )


def room_columns(room: Room) -> dict[str, Any]:
    """A room as CSV columns: dimensions, RT60, microphone-to-talker distances (metres, s)."""
    length, width, height = room.dims
    row: dict[str, Any] = {
        "room_length": round(length, 4),
        "room_width": round(width, 4),
        "room_height": round(height, 4),
        "room_rt60": round(room.rt60, 4),
    }
    row.update(
        {f"room_distance_{k + 1}": round(float(d), 4) for k, d in enumerate(room.distances())}
    )
    return row


def held_out_rooms(room: RoomConfig | None, sample_rate: int) -> RoomConfig | None:
    """``sepkit prepare --reverb``'s rooms at the corpus's rate, checked (settings, and that
    pyroomacoustics is there) so that nothing is written for a run that would fail."""
    if room is None:
        return None
    room = replace(room, sample_rate=sample_rate)
    try:
        room.validate(prefix="room")
    except ValueError as err:
        raise DataError(f"--reverb: {err}") from err
    require_pyroomacoustics()
    return room


def describe_rooms(summary: dict[str, Any]) -> list[str]:
    """The line of ``sepkit prepare``'s summary about its rooms (none for a dry corpus)."""
    if not summary.get("reverb"):
        return []
    lo, hi = summary["reverb"]["rt60"]
    return [
        f"  reverb: a simulated room per valid/test mixture (held out from training's rooms), "
        f"RT60 {lo:g}-{hi:g} s, {summary['reverb']['target']} targets"
    ]
