"""Reverberant rooms for WHAMR!-style mixtures: draw a shoebox room, simulate its impulse
responses with pyroomacoustics' image method, reverberate the sources and make their targets.

Why the image method through pyroomacoustics: it is what WHAMR! used, it is exact for a shoebox
room with frequency-flat walls, and a mature library gets the fractional delays and the high-pass
(the image method's DC problem) right, so none of it is hand-written here.

Randomness: :func:`draw_room` takes the example's generator (:func:`sepkit.data.augment.
example_rng`), and the simulation itself has none (no randomised image method, no ray tracing), so
a (seed, epoch, index) always gives bit-identical impulse responses and a resumed run mixes the
same reverberant examples. pyroomacoustics is imported only when a room is simulated (it costs
~2 s and is an optional extra: ``pip install 'sepkit[rooms]'``).

Targets (``RoomConfig.target``): the model hears the reverberant sources and is scored against

- ``direct`` (default): each source through the direct path alone, as WHAMR!'s anechoic targets:
  the task is separation *and* dereverberation, and scores stay comparable with the literature;
- ``early``: the direct path and the reflections of the first ``early_ms`` (50 ms) after it, which
  the ear fuses with the direct sound (the C50 clarity split): an easier target for models that
  should not dereverberate.

Both come from the same simulation and keep the direct path's delay, so the target is aligned
with the reverberant source sample for sample and SI-SNR against it is meaningful.

Speed: the image count grows with the cube of RT60 / room size; a 2-source room takes 0.03 s at
RT60 0.2 s and 1-6 s at 1 s (mean 0.75 s over the default draws on one core), ~30x more than the
demo model's training step spends per example. :class:`RirPool` trades per-example rooms for a
fixed pool of pre-simulated ones, drawn in ~2 ms (``bench/room_speed.py``).

RT60: the image method in a shoebox with one absorption for all walls is not a diffuse field, so
it follows Sabine's formula only roughly: the measured decay (Schroeder, T20) is within ~20% of the
drawn RT60 up to 0.6 s and ~25% longer near 1 s.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

from sepkit.config import ConfigError, to_dict
from sepkit.utils.io import atomic_write_with

#: Speed of sound (m/s), pyroomacoustics' default: used to check a config without importing it.
SPEED_OF_SOUND = 343.0
#: Tries to place a source at a drawn distance and azimuth before aiming it at the room's centre.
PLACE_TRIES = 32
#: Stream of the pool's generators, apart from augment's per-example streams (1, 2, 3, ...).
POOL_STREAM = 0x524F4F4D  # "ROOM"
Range = tuple[float, float]


def require_pyroomacoustics() -> Any:
    """The pyroomacoustics module, or an ImportError that says how to install it."""
    try:
        import pyroomacoustics
    except ImportError as err:
        raise ImportError(
            "reverberant mixing simulates rooms with pyroomacoustics, which is not installed: "
            "pip install 'sepkit[rooms]'"
        ) from err
    return pyroomacoustics


@dataclass
class RoomConfig:
    """What rooms are drawn and what the target is. Lengths in metres, times in seconds.

    Defaults follow WHAMR!'s kind of rooms: 5-10 x 5-10 x 3-4 m, one microphone at sitting/standing
    height, talkers 0.66-2 m away at 1.5-2 m height. RT60 starts at 0.2 s rather than 0.1 s: the
    image method reaches a given RT60 by Sabine's absorption, and 0.1 s in a 10 x 10 x 4 m room
    needs an absorption above 1 (``validate`` says so).
    """

    length: Range = (5.0, 10.0)
    width: Range = (5.0, 10.0)
    height: Range = (3.0, 4.0)
    rt60: Range = (0.2, 1.0)
    #: Horizontal distance from the microphone to each source.
    source_distance: Range = (0.66, 2.0)
    source_height: Range = (1.5, 2.0)
    mic_height: Range = (1.2, 1.6)
    #: Smallest distance from the microphone and every source to every wall, floor and ceiling.
    wall_margin: float = 0.5
    #: Cap on the image order; None simulates the whole decay (pyroomacoustics' inverse_sabine).
    #: A cap is faster but cuts the tail, so the room no longer has its RT60.
    max_order: int | None = None
    target: Literal["direct", "early"] = "direct"
    early_ms: float = 50.0
    #: Scale each source's responses so its direct path has unit gain: the mixer's levels and
    #: relative gains (set on dry sources) then hold for the targets, whatever the distances.
    normalize: bool = True
    sample_rate: int = 8000

    def validate(self, prefix: str = "room") -> None:
        """Raise :class:`ConfigError` naming the key of the first unusable value."""
        for name in ("length", "width", "height", "rt60", "source_distance", "source_height"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ConfigError(f"{prefix}.{name}: need 0 < low <= high, got [{lo}, {hi}]")
        lo, hi = self.mic_height
        if not 0 < lo <= hi:
            raise ConfigError(f"{prefix}.mic_height: need 0 < low <= high, got [{lo}, {hi}]")
        if self.wall_margin <= 0:
            raise ConfigError(f"{prefix}.wall_margin: must be positive (sources inside the room)")
        # A microphone anywhere has room for a source at the largest distance towards the centre.
        need = 2 * (self.wall_margin + self.source_distance[1])
        for name in ("length", "width"):
            if getattr(self, name)[0] < need:
                raise ConfigError(
                    f"{prefix}.{name}: a room of {getattr(self, name)[0]:g} m is too small for "
                    f"its sources: sources up to {self.source_distance[1]:g} m from the microphone "
                    f"and {self.wall_margin:g} m from every wall need >= {need:g} m "
                    f"(2 x (wall_margin + source_distance max))"
                )
        for name in ("source_height", "mic_height"):
            lo, hi = getattr(self, name)
            if lo < self.wall_margin or hi > self.height[0] - self.wall_margin:
                raise ConfigError(
                    f"{prefix}.{name}: [{lo:g}, {hi:g}] m must stay {self.wall_margin:g} m "
                    f"(wall_margin) from the floor and from the lowest ceiling ({self.height[0]:g} m)"
                )
        # Sabine's absorption grows with the room: the largest room at the shortest RT60 is worst.
        a = sabine_absorption(self.rt60[0], (self.length[1], self.width[1], self.height[1]))
        if a > 1:
            raise ConfigError(
                f"{prefix}.rt60: {self.rt60[0]:g} s cannot be simulated in the largest room "
                f"({self.length[1]:g} x {self.width[1]:g} x {self.height[1]:g} m): its walls "
                f"would need an absorption of {a:.2f} > 1; raise rt60's low end or shrink the room"
            )
        if self.max_order is not None and self.max_order < 0:
            raise ConfigError(f"{prefix}.max_order: must be >= 0 or null (whole decay)")
        if self.target not in ("direct", "early"):
            raise ConfigError(f"{prefix}.target: expected 'direct' or 'early', got {self.target!r}")
        if self.early_ms <= 0:
            raise ConfigError(f"{prefix}.early_ms: must be positive")
        if self.sample_rate <= 0:
            raise ConfigError(f"{prefix}.sample_rate: must be positive")


def sabine_absorption(rt60: float, dims: tuple[float, float, float]) -> float:
    """Energy absorption of every surface that gives ``rt60`` by Sabine's formula (as
    pyroomacoustics' ``inverse_sabine``); above 1 the RT60 cannot be reached."""
    length, width, height = dims
    volume = length * width * height
    surface = 2 * (length * width + length * height + width * height)
    return 24 * math.log(10) * volume / (SPEED_OF_SOUND * surface * rt60)


@dataclass(frozen=True)
class Room:
    """One drawn room: dimensions and positions in metres, ``sources[k]`` is source k."""

    dims: tuple[float, float, float]
    rt60: float
    mic: tuple[float, float, float]
    sources: tuple[tuple[float, float, float], ...]
    max_order: int | None = None

    def distances(self) -> np.ndarray:
        """Straight-line distance from each source to the microphone, ``[C]``."""
        return np.linalg.norm(np.asarray(self.sources) - np.asarray(self.mic), axis=1)


class RoomResponses(NamedTuple):
    """Impulse responses from each source to the microphone, zero-padded to a common length.

    Every response is delayed by ``lead`` samples beyond the propagation time: pyroomacoustics
    centres its fractional-delay filters (``frac_delay_length // 2``). :func:`reverberate` removes
    it, so a reverberated source's direct path arrives exactly ``distance / c`` after the dry one.
    """

    reverberant: np.ndarray  # [C, L] float32
    target: np.ndarray  # [C, L'] float32, the direct path (+ early reflections), same delay
    lead: int


def _uniform(rng: np.random.Generator, bounds: Range) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def draw_room(rng: np.random.Generator, cfg: RoomConfig, num_sources: int) -> Room:
    """A room, its RT60, a microphone and ``num_sources`` source positions, all from ``rng``.

    Each source is at a horizontal distance in ``cfg.source_distance`` and a uniform azimuth from
    the microphone; a position closer than ``wall_margin`` to a wall is redrawn, and after
    :data:`PLACE_TRIES` misses the source is aimed at the room's centre, which always fits in a
    config that passed :meth:`RoomConfig.validate`. Needs numpy only.
    """
    dims = (_uniform(rng, cfg.length), _uniform(rng, cfg.width), _uniform(rng, cfg.height))
    rt60 = _uniform(rng, cfg.rt60)
    m = cfg.wall_margin
    mx, my = float(rng.uniform(m, dims[0] - m)), float(rng.uniform(m, dims[1] - m))
    mic = (mx, my, _uniform(rng, cfg.mic_height))
    sources = []
    for _ in range(num_sources):
        for _ in range(PLACE_TRIES):
            r, phi = _uniform(rng, cfg.source_distance), float(rng.uniform(0.0, 2 * math.pi))
            x, y = mx + r * math.cos(phi), my + r * math.sin(phi)
            if m <= x <= dims[0] - m and m <= y <= dims[1] - m:
                break
        else:
            to_centre = np.array([dims[0] / 2 - mx, dims[1] / 2 - my])
            norm = float(np.linalg.norm(to_centre))
            ux, uy = (to_centre / norm) if norm > 0 else (1.0, 0.0)
            x, y = mx + r * float(ux), my + r * float(uy)
        sources.append((x, y, _uniform(rng, cfg.source_height)))
    return Room(dims, rt60, mic, tuple(sources), cfg.max_order)


def _simulate(pra: Any, room: Room, rate: int, max_order: int, absorption: float) -> list[Any]:
    shoebox = pra.ShoeBox(
        list(room.dims), fs=rate, materials=pra.Material(absorption), max_order=max_order
    )
    for position in room.sources:
        shoebox.add_source(list(position))
    shoebox.add_microphone(list(room.mic))
    shoebox.compute_rir()
    return list(shoebox.rir[0])


def _stack(rirs: list[np.ndarray], scale: np.ndarray) -> np.ndarray:
    out = np.zeros((len(rirs), max(len(h) for h in rirs)), dtype=np.float32)
    for k, h in enumerate(rirs):
        out[k, : len(h)] = np.asarray(h, dtype=np.float64) * scale[k]
    return out


def room_impulse_responses(
    room: Room,
    sample_rate: int,
    *,
    target: Literal["direct", "early"] = "direct",
    early_ms: float = 50.0,
    normalize: bool = True,
) -> RoomResponses:
    """Simulate ``room``: reverberant responses ``[C, L]`` (image method up to the order that
    covers its RT60, or ``room.max_order``) and the target responses ``[C, L']``.

    The direct target is a second simulation of the same geometry with image order 0, so it is
    the direct-path part of the reverberant response (same fractional delay, same lead; the two
    differ only below ~20 Hz, by < 1% of the peak, as pyroomacoustics high-passes each response
    at 10 Hz on its own, to remove the image method's DC offset). The early target is the reverberant response cut ``early_ms`` after
    each source's direct path. pyroomacoustics scales an image at distance r by 1/r; with
    ``normalize`` each source's responses are multiplied by its distance, giving a unit
    direct-path gain.
    """
    pra = require_pyroomacoustics()
    c = float(pra.constants.get("c"))
    lead = int(pra.constants.get("frac_delay_length")) // 2
    absorption, order = pra.inverse_sabine(room.rt60, list(room.dims), c=c)
    if room.max_order is not None:
        order = min(order, room.max_order)
    distances = room.distances()
    scale = distances if normalize else np.ones_like(distances)
    reverberant = _stack(_simulate(pra, room, sample_rate, order, absorption), scale)
    if target == "direct":
        direct = _simulate(pra, room, sample_rate, 0, absorption)
        return RoomResponses(reverberant, _stack(direct, scale), lead)
    if target != "early":
        raise ValueError(f"target: expected 'direct' or 'early', got {target!r}")
    cut = np.ceil(lead + (distances / c + early_ms / 1000) * sample_rate).astype(int) + 1
    early = np.zeros((len(distances), int(cut.max())), dtype=np.float32)
    for k, n in enumerate(cut):
        early[k, :n] = reverberant[k, :n]
    return RoomResponses(reverberant, early, lead)


def simulate(rng: np.random.Generator, cfg: RoomConfig, num_sources: int) -> RoomResponses:
    """A new room from ``rng`` and its responses as ``cfg`` says (per-example simulation)."""
    room = draw_room(rng, cfg, num_sources)
    return room_impulse_responses(
        room, cfg.sample_rate, target=cfg.target, early_ms=cfg.early_ms, normalize=cfg.normalize
    )


def reverberate(sources: np.ndarray, rirs: np.ndarray, lead: int = 0) -> np.ndarray:
    """``sources [C, T]`` each convolved with its response ``rirs [C, L]``, ``[C, T]`` float32.

    The output starts ``lead`` samples into the full convolution (the responses' filter centring,
    see :class:`RoomResponses`) and keeps T samples: the reverberant tail past the crop is dropped,
    as a recording cut at the same instant would drop it.
    """
    from scipy.signal import oaconvolve  # lazy: scipy.signal costs ~1 s of CLI start-up

    if sources.shape[0] != rirs.shape[0]:
        raise ValueError(f"{sources.shape[0]} sources but {rirs.shape[0]} impulse responses")
    length = sources.shape[-1]
    full = oaconvolve(sources.astype(np.float32, copy=False), rirs, mode="full", axes=-1)
    out = np.zeros(sources.shape, dtype=np.float32)
    kept = full[:, lead : lead + length]
    out[:, : kept.shape[1]] = kept
    return out


def apply_room(sources: np.ndarray, responses: RoomResponses) -> tuple[np.ndarray, np.ndarray]:
    """``(reverberant [C, T], target [C, T])`` of dry ``sources [C, T]``, time-aligned."""
    return (
        reverberate(sources, responses.reverberant, responses.lead),
        reverberate(sources, responses.target, responses.lead),
    )


class RirPool:
    """``size`` rooms simulated once, each a pure function of ``(seed, slot)``, drawn per example.

    Why: the image method needs 0.1-6 s per room for RT60 up to 1 s (``bench/room_speed.py``), while
    a training step of the demo model takes tens of milliseconds. A pool makes a draw cost one
    convolution. The trade-off is variety: the model sees ``size`` rooms instead of a new one per
    example. Each room holds ``positions`` source positions (>= the sources of a mixture) and a
    draw takes a random ordered subset of them, so a room of 4 positions gives 12 different
    2-talker geometries. Slots are simulated on first use (or all by :meth:`fill`), and
    :meth:`save` / :meth:`load` keep a pool on disk so that data-loader workers and later runs do
    not simulate it again.
    """

    def __init__(
        self,
        cfg: RoomConfig,
        size: int,
        num_sources: int,
        seed: int,
        *,
        positions: int | None = None,
    ) -> None:
        cfg.validate()
        if size < 1:
            raise ValueError("RirPool: size must be >= 1")
        self.cfg, self.size, self.num_sources, self.seed = cfg, size, num_sources, seed
        self.positions = num_sources if positions is None else positions
        if self.positions < num_sources:
            raise ValueError(f"RirPool: positions must be >= num_sources ({num_sources})")
        self._slots: dict[int, RoomResponses] = {}

    def key(self) -> dict[str, Any]:
        """What the pool is a pure function of (config, size, positions, seed): it names a pool
        cached on disk (:mod:`sepkit.data.reverb`) and is checked when one is loaded."""
        return self._key()

    def _key(self) -> dict[str, Any]:
        return {
            "cfg": to_dict(self.cfg),
            "size": self.size,
            "positions": self.positions,
            "seed": self.seed,
        }

    def room(self, slot: int) -> Room:
        """The geometry of ``slot``, drawn from its own generator."""
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, POOL_STREAM, slot])
        return draw_room(rng, self.cfg, self.positions)

    def responses(self, slot: int) -> RoomResponses:
        """All ``positions`` responses of ``slot`` (simulated on first use)."""
        found = self._slots.get(slot)
        if found is None:
            cfg = self.cfg
            found = self._slots[slot] = room_impulse_responses(
                self.room(slot),
                cfg.sample_rate,
                target=cfg.target,
                early_ms=cfg.early_ms,
                normalize=cfg.normalize,
            )
        return found

    def fill(self) -> RirPool:
        for slot in range(self.size):
            self.responses(slot)
        return self

    def draw(self, rng: np.random.Generator) -> RoomResponses:
        """A room of the pool and ``num_sources`` of its positions, chosen by ``rng``."""
        slot = int(rng.integers(self.size))
        pick = rng.permutation(self.positions)[: self.num_sources]
        full = self.responses(slot)
        return RoomResponses(full.reverberant[pick], full.target[pick], full.lead)

    def save(self, path: str | Path) -> None:
        """Write every slot (simulating the missing ones) to an ``.npz``, atomically."""
        self.fill()
        arrays: dict[str, Any] = {"key": np.array(json.dumps(self._key(), sort_keys=True))}
        for slot, r in self._slots.items():
            arrays[f"rev{slot}"], arrays[f"tgt{slot}"] = r.reverberant, r.target
            arrays[f"lead{slot}"] = np.array(r.lead)
        atomic_write_with(path, lambda f: np.savez(f, **arrays))

    @classmethod
    def load(
        cls,
        path: str | Path,
        cfg: RoomConfig,
        size: int,
        num_sources: int,
        seed: int,
        *,
        positions: int | None = None,
    ) -> RirPool:
        """A pool read from ``path``; a ValueError if it was made with other settings."""
        pool = cls(cfg, size, num_sources, seed, positions=positions)
        with np.load(path, allow_pickle=False) as data:
            stored = json.loads(str(data["key"]))
            if stored != json.loads(json.dumps(pool._key(), sort_keys=True)):
                raise ValueError(f"{path}: pool made with other settings: {stored}")
            for slot in range(size):
                pool._slots[slot] = RoomResponses(
                    data[f"rev{slot}"], data[f"tgt{slot}"], int(data[f"lead{slot}"])
                )
        return pool
