"""Reverberant rooms (issue 22): seeded draws, pyroomacoustics' responses checked against the
geometry, the direct and early targets, the RT60 the room decays with, bad configs, and the hint
when the optional extra is missing.

Expectations come from the geometry (distances, image sources, 343 m/s) and from Schroeder's
backward integration written here, never from the module's own arithmetic.
"""

from __future__ import annotations

import dataclasses
import importlib.abc
import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sepkit.config import ConfigError
from sepkit.data.rooms import (
    RirPool,
    Room,
    RoomConfig,
    apply_room,
    draw_room,
    reverberate,
    room_impulse_responses,
    simulate,
)

#: Simulation needs the optional extra; drawing, validation and the install hint do not.
needs_rooms = pytest.mark.skipif(
    importlib.util.find_spec("pyroomacoustics") is None, reason="pip install 'sepkit[rooms]'"
)

RATE = 8000
C = 343.0
LEAD = 40  # pyroomacoustics centres its 81-tap fractional-delay filters
#: Small, short rooms: each simulation takes ~0.1 s.
QUICK = RoomConfig(length=(5.0, 6.0), width=(5.0, 6.0), height=(3.0, 3.5), rt60=(0.2, 0.35))


def band_noise(seed: int, n: int) -> np.ndarray:
    """White noise band-limited to 100-3000 Hz, where the fractional-delay filters are flat."""
    from scipy.signal import butter, sosfiltfilt

    x = np.random.default_rng(seed).standard_normal(n)
    sos = butter(8, [100, 3000], btype="bandpass", fs=RATE, output="sos")
    return sosfiltfilt(sos, x).astype(np.float32)


def first_reflection_delay(src: tuple[float, ...], mic: tuple[float, ...], dims: tuple[float, ...]):
    """Seconds until the earliest first-order reflection (the six mirror images of the source)."""
    best = math.inf
    for axis in range(3):
        for wall in (0.0, dims[axis]):
            image = list(src)
            image[axis] = 2 * wall - src[axis]
            best = min(best, math.dist(image, mic) / C)
    return best


def schroeder_rt60(h: np.ndarray) -> float:
    """RT60 from the energy decay curve (backward-integrated squared response): a line fitted
    between -5 and -25 dB, extrapolated to 60 dB (T20)."""
    energy = np.cumsum(h[::-1].astype(np.float64) ** 2)[::-1]
    edc = 10 * np.log10(np.maximum(energy / energy[0], 1e-30))
    t = np.arange(len(h)) / RATE
    sel = (edc <= -5) & (edc >= -25)
    slope = np.polyfit(t[sel], edc[sel], 1)[0]
    return float(-60 / slope)


# A room where the direct path arrives well before any reflection (checked in the test).
DIMS = (8.0, 7.0, 6.0)
MIC = (4.0, 3.5, 3.0)
SOURCES = ((5.2, 4.1, 3.3), (3.0, 2.6, 2.6))
OPEN_ROOM = Room(DIMS, 0.4, MIC, SOURCES)


@needs_rooms
def test_same_generator_state_gives_identical_responses() -> None:
    def responses(seed: int):
        return simulate(np.random.default_rng([seed, 3, 17, 5]), QUICK, 2)

    a, b, other = responses(0), responses(0), responses(1)
    assert a.reverberant.dtype == np.float32 and a.reverberant.shape[0] == 2
    assert np.array_equal(a.reverberant, b.reverberant)  # bit-identical
    assert np.array_equal(a.target, b.target)
    rooms = [draw_room(np.random.default_rng([s, 3, 17, 5]), QUICK, 2) for s in (0, 0, 1)]
    assert rooms[0] == rooms[1] != rooms[2]
    assert a.reverberant.shape != other.reverberant.shape or not np.array_equal(
        a.reverberant, other.reverberant
    )


@needs_rooms
def test_direct_path_delay_and_gain_follow_the_geometry() -> None:
    x = band_noise(0, RATE)
    raw = room_impulse_responses(OPEN_ROOM, RATE, normalize=False)
    unit = room_impulse_responses(OPEN_ROOM, RATE)
    for k, src in enumerate(SOURCES):
        distance = math.sqrt(sum((a - b) ** 2 for a, b in zip(src, MIC, strict=True)))
        delay = distance / C * RATE
        for responses, gain in ((raw, 1 / distance), (unit, 1.0)):
            # pyroomacoustics' free-field image: amplitude 1/r, the Green's function 1/(4 pi r)
            # without its 1/(4 pi); normalised responses have a unit direct-path gain.
            y = reverberate(x[None], responses.target[k : k + 1], responses.lead)[0]
            corr = np.correlate(y, x, mode="full")[len(x) - 1 :]
            lag = int(np.argmax(corr[:200]))
            assert abs(lag - delay) <= 1.0, (lag, delay)
            d = round(delay)
            measured = np.sqrt(np.mean(y[d + 100 : -100] ** 2) / np.mean(x[100 : -100 - d] ** 2))
            assert measured == pytest.approx(gain, rel=0.03)
            assert responses.lead == LEAD


@needs_rooms
def test_reverberant_response_starts_with_the_target_direct_path() -> None:
    """Time alignment: before the first reflection's filter begins, the reverberant response is
    the direct-path target, so the two share the direct path's delay sample for sample (up to
    pyroomacoustics' 10 Hz high-pass, run on each response separately: < 1% of the peak)."""
    responses = room_impulse_responses(OPEN_ROOM, RATE)
    for k, src in enumerate(SOURCES):
        direct_n = math.dist(src, MIC) / C * RATE
        # The first reflection arrives at LEAD + t * RATE; its filter starts LEAD samples earlier.
        clean = int(first_reflection_delay(src, MIC, DIMS) * RATE) - 1
        assert clean > LEAD + direct_n + 8, "the test room must separate direct path and echoes"
        rev = responses.reverberant[k, :clean]
        tgt = np.zeros(clean, dtype=np.float32)
        n = min(clean, responses.target.shape[1])
        tgt[:n] = responses.target[k, :n]
        assert np.abs(rev - tgt).max() < 0.01 * np.abs(tgt).max()
        assert int(np.argmax(np.abs(rev))) == int(np.argmax(np.abs(tgt)))
        assert abs(int(np.argmax(np.abs(tgt))) - (LEAD + direct_n)) <= 1
    x = band_noise(1, RATE)
    reverberant, target = apply_room(np.stack([x, x]), responses)
    assert reverberant.shape == target.shape == (2, RATE)


@needs_rooms
def test_early_target_holds_the_direct_path_and_part_of_the_reverberation() -> None:
    early = room_impulse_responses(OPEN_ROOM, RATE, target="early", early_ms=50.0)
    direct = room_impulse_responses(OPEN_ROOM, RATE, target="direct")
    assert np.array_equal(early.reverberant, direct.reverberant)
    for k, src in enumerate(SOURCES):
        clean = int(first_reflection_delay(src, MIC, DIMS) * RATE) - 1
        n = min(clean, direct.target.shape[1])
        assert np.abs(early.target[k, :n] - direct.target[k, :n]).max() < 0.01
        # It ends 50 ms (400 samples) after the direct path.
        last = int(np.flatnonzero(early.target[k])[-1])
        assert abs(last - (LEAD + math.dist(src, MIC) / C * RATE + 0.05 * RATE)) <= 2
        energy = [
            float(np.sum(h[k].astype(np.float64) ** 2))
            for h in (direct.target, early.target, early.reverberant)
        ]
        assert energy[0] < energy[1] < energy[2], energy
    x = np.stack([band_noise(2, RATE), band_noise(3, RATE)])
    y_direct = apply_room(x, direct)[1]
    y_rev, y_early = apply_room(x, early)
    for k in range(2):
        assert np.sum(y_direct[k] ** 2) < np.sum(y_early[k] ** 2) < np.sum(y_rev[k] ** 2)


@needs_rooms
@pytest.mark.parametrize(
    ("dims", "rt60"), [((6.0, 5.0, 3.0), 0.3), ((7.0, 6.0, 3.2), 0.45), ((8.0, 7.0, 3.5), 0.6)]
)
def test_reverberation_decays_with_the_drawn_rt60(dims: tuple[float, ...], rt60: float) -> None:
    """The image method in a shoebox follows Sabine's formula only roughly (its sound field is not
    diffuse): within 20% for these rooms, which a wrong absorption would miss by far."""
    room = Room(dims, rt60, (2.5, 2.5, 1.4), ((3.5, 3.2, 1.7), (1.6, 1.5, 1.8)))  # type: ignore[arg-type]
    responses = room_impulse_responses(room, RATE)
    for h in responses.reverberant:
        assert schroeder_rt60(h) == pytest.approx(rt60, rel=0.2)


def test_drawn_positions_respect_distances_and_walls() -> None:
    # length = width = 2 x (margin + max distance): the tightest room validate accepts.
    tight = RoomConfig(length=(5.0, 5.0), width=(5.0, 6.0), source_distance=(1.0, 2.0))
    for cfg in (RoomConfig(), tight):
        cfg.validate()
        for i in range(300):
            room = draw_room(np.random.default_rng([7, i]), cfg, 3)
            m = cfg.wall_margin
            for pos in (room.mic, *room.sources):
                for axis in range(3):
                    assert m - 1e-9 <= pos[axis] <= room.dims[axis] - m + 1e-9
            for src in room.sources:
                horizontal = math.dist(src[:2], room.mic[:2])
                assert cfg.source_distance[0] - 1e-9 <= horizontal <= cfg.source_distance[1] + 1e-9
            assert cfg.rt60[0] <= room.rt60 <= cfg.rt60[1]


def test_reverberate_removes_the_lead_and_keeps_the_length() -> None:
    x = np.random.default_rng(0).standard_normal((2, 100)).astype(np.float32)
    rirs = np.zeros((2, 60), dtype=np.float32)
    rirs[0, LEAD + 5] = 0.5
    rirs[1, LEAD] = 1.0
    y = reverberate(x, rirs, LEAD)
    assert y.shape == (2, 100) and y.dtype == np.float32
    assert np.allclose(y[0, 5:], 0.5 * x[0, :95], atol=1e-6) and np.allclose(y[0, :5], 0, atol=1e-6)
    assert np.allclose(y[1], x[1], atol=1e-6)
    with pytest.raises(ValueError, match="2 sources but 1"):
        reverberate(x, rirs[:1])


@pytest.mark.parametrize(
    ("changes", "key", "words"),
    [
        ({"rt60": (0.8, 0.3)}, "room.rt60", "low <= high"),
        ({"length": (9.0, 6.0)}, "room.length", "low <= high"),
        ({"rt60": (0.0, 0.5)}, "room.rt60", "low <= high"),
        ({"length": (3.0, 6.0)}, "room.length", "too small for its sources"),
        ({"width": (4.0, 8.0)}, "room.width", "too small for its sources"),
        ({"source_height": (1.5, 2.8)}, "room.source_height", "ceiling"),
        ({"rt60": (0.1, 1.0)}, "room.rt60", "absorption"),
        ({"max_order": -1}, "room.max_order", ">= 0"),
        ({"target": "late"}, "room.target", "'direct' or 'early'"),
        ({"wall_margin": 0.0}, "room.wall_margin", "positive"),
        ({"source_distance": (1.0, 3.0)}, "room.length", "too small for its sources"),
    ],
)
def test_bad_configs_name_their_key(changes: dict[str, object], key: str, words: str) -> None:
    cfg = RoomConfig(**changes)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="^" + key.replace(".", r"\.")) as err:
        cfg.validate()
    assert words in str(err.value)
    with pytest.raises(ConfigError, match=r"^data\.room\."):
        cfg.validate(prefix="data.room")


@needs_rooms
def test_pool_is_a_pure_function_of_seed_and_slot(tmp_path: Path) -> None:
    cfg = dataclasses.replace(QUICK, max_order=4)
    pool = RirPool(cfg, size=3, num_sources=2, seed=11, positions=3)
    again = RirPool(cfg, size=3, num_sources=2, seed=11, positions=3)
    draws = [pool.draw(np.random.default_rng([0, i])) for i in range(6)]
    for i, got in enumerate(draws):
        want = again.draw(np.random.default_rng([0, i]))
        assert got.reverberant.shape[0] == 2
        assert np.array_equal(got.reverberant, want.reverberant)
        assert np.array_equal(got.target, want.target)
    # A draw is two distinct positions of one slot: rows of the pool's responses.
    rows = [r for slot in range(3) for r in pool.responses(slot).reverberant]
    assert len(rows) == 9
    for draw in draws:
        for row in draw.reverberant:
            assert sum(np.array_equal(row, r) for r in rows) == 1
        assert not np.array_equal(draw.reverberant[0], draw.reverberant[1])
    pool.save(tmp_path / "pool.npz")
    loaded = RirPool.load(tmp_path / "pool.npz", cfg, 3, 2, 11, positions=3)
    for slot in range(3):
        assert np.array_equal(loaded.responses(slot).target, pool.responses(slot).target)
    with pytest.raises(ValueError, match="other settings"):
        RirPool.load(tmp_path / "pool.npz", cfg, 3, 2, 12, positions=3)


class _Hidden(importlib.abc.MetaPathFinder):
    """Finds nothing called pyroomacoustics, as on a machine without the extra."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "pyroomacoustics" or name.startswith("pyroomacoustics."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


def test_missing_pyroomacoustics_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in sys.modules if n.split(".")[0] == "pyroomacoustics"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_Hidden(), *sys.meta_path])
    room = draw_room(np.random.default_rng(0), QUICK, 2)  # drawing needs numpy only
    with pytest.raises(ImportError, match=r"pip install 'sepkit\[rooms\]'"):
        room_impulse_responses(room, RATE)


def test_importing_the_module_does_not_import_pyroomacoustics() -> None:
    code = (
        "import sys, sepkit.data.rooms as r, numpy as np\n"
        "r.draw_room(np.random.default_rng(0), r.RoomConfig(), 2)\n"
        "assert 'pyroomacoustics' not in sys.modules, 'imported eagerly'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
