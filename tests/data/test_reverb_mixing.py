"""Reverberant mixtures (issue 22, WHAMR!-style): rooms wired into on-the-fly mixing, `sepkit
prepare --reverb`'s held-out rooms, WHAMR!'s own layout, the reverberant recipes, bad settings.

Expectations are recomputed independently: scipy's ``fftconvolve`` (float64) of the mixer's dry
sources with the impulse responses the example's room stream draws, never the module's own
arithmetic. Rooms are small and short (RT60 0.2-0.25 s, ~0.1 s to simulate) and pools tiny.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers.noisy_corpus import SMALL_NOISY, prepared, wham_corpus
from helpers.reverb_corpus import whamr_corpus
from helpers.training import TINY_MODEL, resume_matches_uninterrupted, train_recipe_two_steps
from scipy.signal import correlate, fftconvolve
from torch.utils.data import DataLoader

import sepkit.data.rooms as rooms_module
from sepkit.config import ConfigError, to_dict
from sepkit.data import DataConfig, build_dataset, collate
from sepkit.data.augment import STREAM_MIX, STREAM_NOISE, STREAM_ROOM, example_rng
from sepkit.data.config import POOL_KEYS, RoomSection
from sepkit.data.dataset import SeparationDataset
from sepkit.data.errors import DataError
from sepkit.data.prepare import PrepareSpec, prepare_corpus
from sepkit.data.reverb import training_rooms
from sepkit.data.rooms import RirPool, RoomConfig
from sepkit.data.sampler import ResumableSampler
from sepkit.demo import REAL_SPEECH
from sepkit.recipe import load_recipe

needs_rooms = pytest.mark.skipif(
    importlib.util.find_spec("pyroomacoustics") is None,
    reason="simulating rooms needs pyroomacoustics: pip install 'sepkit[rooms]'",
)
RECIPES = Path(__file__).parents[2] / "sepkit" / "recipes"
SEED = 7
SIZE = {"length": (5.0, 6.0), "width": (5.0, 6.0), "height": (3.0, 3.5)}
QUICK = RoomSection(rt60=(0.2, 0.25), **SIZE, pool_size=3, positions=3)  # type: ignore[arg-type]
QUICK_OVERRIDES = [
    "data.room.rt60=[0.2, 0.25]",
    "data.room.length=[5, 6]",
    "data.room.width=[5, 6]",
    "data.room.height=[3, 3.5]",
    "data.room.pool_size=2",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`sepkit prepare` of the shipped speech; valid/test reverberant, in held-out rooms."""
    room = RoomConfig(rt60=(0.2, 0.25), **SIZE)  # type: ignore[arg-type]
    return prepared(tmp_path_factory.mktemp("reverb") / "corpus", room=room)


def _train(
    corpus: Path, tmp_path: Path, room: RoomSection = QUICK, **kw: object
) -> SeparationDataset:
    cfg = DataConfig(
        root=str(corpus), training_signal_len=8000, mixtures_per_epoch=16, reverb=True, room=room,
        **kw,  # type: ignore[arg-type]
    )  # fmt: skip
    cfg.validate()
    return build_dataset(cfg, "train", train=True, seed=SEED, cache_path=tmp_path / "v.json")


def _snr_db(sources: np.ndarray, noise: np.ndarray) -> float:
    loudest = max(float(np.mean(s.astype(np.float64) ** 2)) for s in sources)
    return 10 * math.log10(loudest / float(np.mean(noise.astype(np.float64) ** 2)))


def _convolve(dry: np.ndarray, rirs: np.ndarray, lead: int) -> np.ndarray:
    """Each dry source through its response, from the direct path's filter centre on, float64."""
    n = dry.shape[1]
    full = [
        fftconvolve(d.astype(np.float64), h.astype(np.float64))
        for d, h in zip(dry, rirs, strict=True)
    ]
    return np.stack([np.pad(f[lead : lead + n], (0, max(0, n - len(f) + lead))) for f in full])


def _reader(corpus: Path, row: dict[str, str]):  # type: ignore[no-untyped-def]
    return lambda col: sf.read(str(corpus / row[col]), dtype="float64")[0]


def test_room_section_is_room_config_plus_pooling() -> None:
    """data.room has RoomConfig's keys and defaults (its own literals, so that a recipe loads
    without numpy), plus the pool's; the rate comes from data.sample_rate."""
    section = to_dict(RoomSection())
    pooling = {k: section.pop(k) for k in POOL_KEYS}
    assert section == {k: v for k, v in to_dict(RoomConfig()).items() if k != "sample_rate"}
    assert pooling == {"pool_size": 64, "positions": 4, "cache": "auto"}
    assert RoomSection().room_config(16000).sample_rate == 16000
    assert not DataConfig().reverb


# -------------------------------------------------------------- the reverberant mixture


@needs_rooms
@pytest.mark.parametrize("noise", ["none", "shipped"])
def test_mixture_is_the_sum_of_the_room_convolved_sources(
    corpus: Path, tmp_path: Path, noise: str
) -> None:
    ds = _train(corpus, tmp_path, noise=noise)
    assert ds.rooms is not None and ds.mixer is not None
    for epoch in (0, 2):
        ds.set_epoch(epoch)
        for i in range(4):
            ex = ds[i]
            dry, _ = ds.mixer.make(example_rng(SEED, epoch, i, STREAM_MIX), 8000)
            room = ds.rooms.draw(example_rng(SEED, epoch, i, STREAM_ROOM))
            reverberant = _convolve(dry, room.reverberant, room.lead)
            target = _convolve(dry, room.target, room.lead)
            got = ex.sources.numpy().astype(np.float64)
            # At most one factor (against clipping) between the example and the recomputation.
            scale = float(np.sum(got * target) / np.sum(target * target))
            assert 0.1 < scale <= 1 + 1e-6
            peak = float(np.abs(reverberant).max())
            np.testing.assert_allclose(got, scale * target, rtol=0, atol=1e-5 * peak)
            added = 0.0 if ex.noise is None else ex.noise.numpy()
            mix = scale * reverberant.sum(0) + added
            np.testing.assert_allclose(ex.mix.numpy(), mix, rtol=0, atol=2e-5 * peak)
            assert float(ex.mix.abs().max()) <= 0.99 + 1e-6
            # Reverberation is really there: the mixture is not the sum of the targets.
            tail = reverberant - target
            assert np.sum(tail**2) > 0.05 * np.sum(target**2)
            if noise == "none":
                assert ex.noise is None
            else:  # the SNR is over the loudest *reverberant* source (sepkit/data/reverb.py)
                assert ex.noise is not None
                drawn = example_rng(SEED, epoch, i, STREAM_NOISE).uniform(-6.0, 3.0)
                measured = _snr_db(scale * reverberant, ex.noise.numpy())
                assert measured == pytest.approx(drawn, abs=1e-3)


@needs_rooms
def test_target_is_the_direct_path_delayed_by_the_distance(corpus: Path, tmp_path: Path) -> None:
    """One room, two positions: each target is its dry source delayed by distance / c."""
    ds = _train(corpus, tmp_path, room=dataclasses.replace(QUICK, pool_size=1, positions=2))
    assert ds.rooms is not None and ds.rooms.pool is not None and ds.mixer is not None
    pool = ds.rooms.pool
    distances = pool.room(0).distances()
    full = pool.responses(0)
    for i in range(3):
        ex = ds[i]
        dry, _ = ds.mixer.make(example_rng(SEED, 0, i, STREAM_MIX), 8000)
        drawn = ds.rooms.draw(example_rng(SEED, 0, i, STREAM_ROOM))
        for k in range(2):
            (position,) = [p for p in range(2) if np.array_equal(drawn.target[k], full.target[p])]
            corr = correlate(ex.sources[k].numpy(), dry[k], mode="full", method="fft")
            lag = int(np.argmax(corr[len(dry[k]) - 1 :][:200]))
            assert abs(lag - distances[position] / 343.0 * 8000) <= 1.0


def test_reverb_off_leaves_every_example_as_it_was(corpus: Path, tmp_path: Path) -> None:
    """The room section is read only with data.reverb: clean and noisy examples are unchanged
    (their bit-identity against the previous commit was also checked by hashing examples)."""
    for noise in ("none", "shipped"):
        kw = {
            "root": str(corpus),
            "training_signal_len": 8000,
            "mixtures_per_epoch": 4,
            "noise": noise,
        }
        plain = build_dataset(DataConfig(**kw), "train", train=True, seed=SEED)  # type: ignore[arg-type]
        other = DataConfig(**kw, room=QUICK)  # type: ignore[arg-type]
        ds = build_dataset(other, "train", train=True, seed=SEED)
        assert ds.rooms is None
        for i in range(4):
            a, b = plain[i], ds[i]
            assert torch.equal(a.mix, b.mix) and torch.equal(a.sources, b.sources)


# ------------------------------------------------------------ determinism and resume


def _batches(ds: SeparationDataset, workers: int, start: int = 0) -> list[torch.Tensor]:
    sampler = ResumableSampler(len(ds), seed=SEED, shuffle=True)
    sampler.set_epoch(2)
    sampler.set_start(start)
    ds.set_epoch(2)
    loader = DataLoader(ds, batch_size=4, sampler=sampler, collate_fn=collate, num_workers=workers)
    return [torch.cat([b.mix.flatten(), b.sources.flatten()]) for b in loader]


@needs_rooms
def test_same_reverberant_mixture_per_seed_epoch_index_workers_and_resume(
    corpus: Path, tmp_path: Path
) -> None:
    a = _train(corpus, tmp_path, noise="shipped", speed_perturb=True)
    b = _train(corpus, tmp_path, noise="shipped", speed_perturb=True)
    for epoch in (0, 1):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        assert all(torch.equal(a[i].sources, b[i].sources) for i in range(4))
    a.set_epoch(0)
    first = a[0].mix
    a.set_epoch(1)
    assert not torch.equal(first, a[0].mix)
    serial = _batches(a, 0)
    assert len(serial) == 4
    assert all(torch.equal(x, y) for x, y in zip(serial, _batches(b, 2), strict=True))
    resumed = _batches(b, 0, start=8)  # crashed after two batches of four
    assert all(torch.equal(x, y) for x, y in zip(serial[2:], resumed, strict=True))


@needs_rooms
@pytest.mark.timeout(300)
def test_a_stopped_and_resumed_reverberant_run_ends_bit_identical(
    corpus: Path, tmp_path: Path
) -> None:
    overrides = [
        f"data.root={corpus}",
        *QUICK_OVERRIDES,
        "data.batch_size=2",
        "data.mixtures_per_epoch=6",
        "data.training_signal_len=4000",
        "data.max_examples=2",
        "train.max_minutes=null",
        "train.checkpoint_every_minutes=null",
        "train.progress_bar=false",
        "train.save_audio=false",
        "train.ema_decay=null",
        *TINY_MODEL,
    ]

    assert resume_matches_uninterrupted("demo-reverb.yaml", overrides, tmp_path)


@needs_rooms
def test_the_pool_is_simulated_once_across_processes_and_cached(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two builders at once (as DDP ranks) simulate the pool once, under the lock; later builds
    load the file; an unreadable file is simulated again; another seed makes another file."""
    simulated: list[int] = []
    real = rooms_module.room_impulse_responses

    def counting(*args: object, **kw: object) -> object:
        simulated.append(1)
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(rooms_module, "room_impulse_responses", counting)
    folder = tmp_path / "rooms"
    cfg = DataConfig(
        root=str(corpus), reverb=True, room=dataclasses.replace(QUICK, cache=str(folder))
    )
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda _: training_rooms(cfg, SEED, corpus), range(2))
    assert len(simulated) == QUICK.pool_size
    files = sorted(p.name for p in folder.iterdir())
    assert len(files) == 2 and files[0].startswith("pool-") and files[1] == files[0] + ".lock"
    for a, b in ((first, second), (first, training_rooms(cfg, SEED, corpus))):
        assert a.pool is not None and b.pool is not None
        for slot in range(QUICK.pool_size):
            assert np.array_equal(a.pool.responses(slot).target, b.pool.responses(slot).target)
    assert len(simulated) == QUICK.pool_size  # loaded, not simulated
    (folder / files[0]).write_bytes(b"not a zip file")
    training_rooms(cfg, SEED, corpus)
    assert len(simulated) == 2 * QUICK.pool_size
    training_rooms(cfg, SEED + 1, corpus)
    assert len(list(folder.glob("pool-*.npz"))) == 2


# ------------------------------------------------------------- fixed valid/test mixtures


@needs_rooms
def test_prepare_reverb_writes_rooms_held_out_from_training(corpus: Path, tmp_path: Path) -> None:
    dry = prepared(tmp_path / "dry")
    summary = json.loads((corpus / "corpus.json").read_text())
    assert summary["summary"]["reverb"] == {"rt60": [0.2, 0.25], "target": "direct"}
    assert "room" not in json.loads((dry / "corpus.json").read_text())["key"]["spec"]
    room = RoomConfig(rt60=(0.2, 0.25), **SIZE)  # type: ignore[arg-type]
    # Training's rooms with the same seed: geometry draws only, no simulation needed.
    training = RirPool(room, 64, 2, 0, positions=4)
    seen = {(*training.room(s).dims, training.room(s).rt60) for s in range(64)}
    seen = {tuple(round(v, 4) for v in key) for key in seen}
    for split in ("valid", "test"):
        with (corpus / f"{split}.csv").open(newline="") as a, (dry / f"{split}.csv").open() as b:
            rows, dry_rows = list(csv.DictReader(a)), list(csv.DictReader(b))
        assert [r["id"] for r in rows] == [r["id"] for r in dry_rows]  # same dry mixtures
        for row in rows:
            key = tuple(float(row[f"room_{n}"]) for n in ("length", "width", "height", "rt60"))
            assert key not in seen
            assert 5 <= key[0] <= 6 and 5 <= key[1] <= 6 and 3 <= key[2] <= 3.5
            assert 0.2 <= key[3] <= 0.25
            for k in (1, 2):
                assert 0.66 <= float(row[f"room_distance_{k}"]) <= math.hypot(2.0, 0.8) + 1e-6
            read = _reader(corpus, row)
            rev = np.stack([read(f"s{k}_reverb_path") for k in (1, 2)])
            targets = np.stack([read(f"s{k}_path") for k in (1, 2)])
            noise = read("noise_path")
            np.testing.assert_allclose(read("mix_path"), rev.sum(0) + noise, atol=1e-6)
            assert _snr_db(rev, noise) == pytest.approx(float(row["noise_snr_db"]), abs=1e-3)
            assert all(np.sum(t**2) < np.sum(r**2) for t, r in zip(targets, rev, strict=True))
    spec = PrepareSpec(**{**SMALL_NOISY.__dict__, "room": room})  # type: ignore[arg-type]
    assert prepare_corpus(REAL_SPEECH, corpus, spec)["reused"] is True


def test_bad_prepare_rooms_are_named_and_nothing_is_written(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"^--reverb: room\.rt60: need 0 < low <= high"):
        prepared(tmp_path / "out", room=RoomConfig(rt60=(0.6, 0.2)))
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------- WHAMR!'s layout


def test_whamr_layout_reads_the_reverberant_mixtures_and_anechoic_targets(tmp_path: Path) -> None:
    root = whamr_corpus(tmp_path / "whamr", count=2)
    cfg = DataConfig(
        root=str(root), format="wsj0-mix", mix_folder="mix_both_reverb",
        source_folder_suffix="_anechoic", use_noise=True,
    )  # fmt: skip
    for split, folder in (("train", "tr"), ("valid", "cv"), ("test", "tt")):
        ds = build_dataset(cfg, split, train=False, seed=0, cache_path=tmp_path / "v.json")
        assert len(ds) == 2
        rec = ds.records[0]
        assert rec.mix == root / folder / "mix_both_reverb" / f"{rec.id}.wav"
        assert [p.parent.name for p in rec.sources] == ["s1_anechoic", "s2_anechoic"]
        assert rec.noise is not None and rec.noise.parent.name == "noise"
        assert len(rec.speakers) == 2  # wsj0-style names
        ex = ds[0]
        np.testing.assert_array_equal(ex.mix.numpy(), sf.read(str(rec.mix), dtype="float32")[0])
        for k, path in enumerate(rec.sources):
            np.testing.assert_array_equal(
                ex.sources[k].numpy(), sf.read(str(path), dtype="float32")[0]
            )
    auto = dataclasses.replace(cfg, format="auto", source_folder_suffix="_reverb", use_noise=False)
    ds = build_dataset(auto, "test", train=False, seed=0, cache_path=tmp_path / "v.json")
    rec = ds.records[0]
    assert [p.parent.name for p in rec.sources] == ["s1_reverb", "s2_reverb"]
    assert ds[0].noise is None  # the noise/ tracks are read with data.use_noise only
    with pytest.raises(
        DataError, match=r"data\.mix_folder=mix \(found mix_both_anechoic, .*mix_both_reverb"
    ):
        build_dataset(DataConfig(root=str(root)), "test", train=False, seed=0)
    plain = dataclasses.replace(cfg, source_folder_suffix="")
    with pytest.raises(DataError, match=r"s1_anechoic, s1_reverb: set data\.source_folder_suffix"):
        build_dataset(plain, "test", train=False, seed=0)


# ------------------------------------------------------------------------- the recipes


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "recipe",
    [
        pytest.param("demo-reverb.yaml", marks=needs_rooms),
        pytest.param("sepformer-whamr.yaml", marks=needs_rooms),
        "convtasnet-whamr.yaml",
    ],
)
def test_reverberant_recipes_train_two_steps(recipe: str, corpus: Path, tmp_path: Path) -> None:
    if recipe == "demo-reverb.yaml":
        root, extra = corpus, ["data.mixtures_per_epoch=4"]
    else:
        root = whamr_corpus(tmp_path / "whamr", count=3, seconds=0.5)
        extra = ["data.limit_training_signal_len=true", "data.training_signal_len=2000"]
    cfg = load_recipe(RECIPES / recipe, [f"data.root={root}"])
    assert cfg.data.reverb == (recipe != "convtasnet-whamr.yaml")
    summary = train_recipe_two_steps(recipe, root, tmp_path / "run", *QUICK_OVERRIDES, *extra)
    assert summary["updates"] == 2


# ------------------------------------------------------------------------- bad settings


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.room.rt60=[0.8, 0.3]", r"data\.room\.rt60: need 0 < low <= high"),
        ("data.room.rt6=[0.2, 0.3]", r"data\.room\.rt6: unknown key \(did you mean 'rt60'\?\)"),
        ("data.room.target=late", r"data\.room\.target: expected one of 'direct' \| 'early'"),
        ("data.room.pool_size=-1", r"data\.room\.pool_size: must be >= 0"),
        ("data.room.positions=1", r"data\.room\.positions: 1 talker positions per room"),
        ("data.room.length=[3, 6]", r"data\.room\.length: a room of 3 m is too small"),
        ("data.room.rt60=[0.1, 1.0]", r"data\.room\.rt60: 0\.1 s cannot be simulated"),
        ("data.room.cache=' '", r"data\.room\.cache: use auto, none or a folder"),
        ("data.room=3", r"data\.room: expected a mapping of RoomSection fields"),
        ("data.mix_folder=a/b", r"data\.mix_folder: a folder name, not a path"),
    ],
)
def test_bad_room_settings_name_their_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match="^" + message):
        load_recipe(RECIPES / "demo-reverb.yaml", [override])


def test_reverb_on_fixed_training_mixtures_is_refused(tmp_path: Path) -> None:
    root = wham_corpus(tmp_path / "wham", count=2, seconds=1.0)
    cfg = DataConfig(root=str(root), format="wsj0-mix", reverb=True, room=QUICK)
    with pytest.raises(DataError, match=r"^data\.reverb: the training split .* fixed mixtures"):
        build_dataset(cfg, "train", train=True, seed=0, cache_path=tmp_path / "v.json")
