"""Noisy mixtures (WHAM!-style): ``mix = sum(sources) + noise`` at a drawn SNR, held-out noise,
exact resume, the noisy recipes, and bad noise input.

Real audio only: the LibriSpeech speakers and the Speech Commands noises that ship with sepkit,
prepared by ``sepkit prepare`` or laid out as WHAM! and Libri2Mix publish their corpora.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers.noisy_corpus import libri2mix_corpus, prepared, wham_corpus
from helpers.training import TINY_MODEL, resume_matches_uninterrupted, train_recipe_two_steps
from torch.utils.data import DataLoader

from sepkit.config import ConfigError
from sepkit.data import DataConfig, build_dataset, collate
from sepkit.data.audio import resample_exact
from sepkit.data.augment import STREAM_NOISE, example_rng
from sepkit.data.dataset import SeparationDataset
from sepkit.data.errors import DataError
from sepkit.data.noise import SHIPPED, SPLITS, NoisePool, segment_bounds
from sepkit.data.prepare import PrepareSpec, prepare_corpus
from sepkit.data.sampler import ResumableSampler
from sepkit.demo import REAL_SPEECH
from sepkit.recipe import load_recipe

RECIPES = Path(__file__).parents[2] / "sepkit" / "recipes"
SEED = 7


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``sepkit prepare`` of the shipped speech, noisy valid/test from the shipped noise."""
    return prepared(tmp_path_factory.mktemp("noisy") / "corpus")


def _train(corpus: Path, tmp_path: Path, **kw: object) -> SeparationDataset:
    cfg = DataConfig(root=str(corpus), training_signal_len=8000, mixtures_per_epoch=16, **kw)  # type: ignore[arg-type]
    cfg.validate()
    return build_dataset(cfg, "train", train=True, seed=SEED, cache_path=tmp_path / "v.json")


def _snr_db(sources: np.ndarray, noise: np.ndarray) -> float:
    """The SNR recomputed from scratch: loudest source's power over the noise's (float64)."""
    s = sources.astype(np.float64)
    n = noise.astype(np.float64)
    return 10 * math.log10(max(float((x * x).mean()) for x in s) / float((n * n).mean()))


def test_shipped_noise_is_intact_credited_and_packaged() -> None:
    import hashlib

    listed = dict(
        reversed(line.split("  ", 1)) for line in (SHIPPED / "SHA256SUMS").read_text().splitlines()
    )
    assert set(listed) == {p.name for p in SHIPPED.glob("*.flac")} and len(listed) == 4
    for name, digest in listed.items():
        assert hashlib.sha256((SHIPPED / name).read_bytes()).hexdigest() == digest, name
        info = sf.info(str(SHIPPED / name))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert info.duration > 60
    readme = (SHIPPED / "README.md").read_text()
    for credit in ("Speech Commands dataset v0.02", "Warden", "2018", "CC BY 4.0", "80 %"):
        assert credit in readme
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert '"corpora/noise/*"' in pyproject  # package data: it ships in the wheel


# ------------------------------------------------------------------------ the noisy mixture


def test_noisy_mix_is_sources_plus_noise_at_the_drawn_snr(corpus: Path, tmp_path: Path) -> None:
    noisy = _train(corpus, tmp_path, noise="shipped", noise_snr_db=(-6.0, 3.0))
    clean = _train(corpus, tmp_path)
    for epoch in (0, 3):
        noisy.set_epoch(epoch)
        clean.set_epoch(epoch)
        for i in range(8):
            ex, ref = noisy[i], clean[i]
            assert ex.noise is not None and ex.noise.shape == ex.mix.shape == (8000,)
            torch.testing.assert_close(ex.mix, ex.sources.sum(0) + ex.noise, atol=1e-6, rtol=0)
            drawn = example_rng(SEED, epoch, i, STREAM_NOISE).uniform(-6.0, 3.0)
            assert _snr_db(ex.sources.numpy(), ex.noise.numpy()) == pytest.approx(drawn, abs=1e-3)
            # The clean part is the clean pipeline's mixture (one factor at most, against
            # clipping): noise draws from its own stream and shifts no other draw.
            assert ex.id == ref.id and ref.noise is None
            scale = float(ex.sources.abs().max() / ref.sources.abs().max())
            assert 0.2 < scale <= 1.0 + 1e-6
            torch.testing.assert_close(ex.sources, ref.sources * scale, atol=1e-6, rtol=1e-5)
            assert float(ex.mix.abs().max()) <= 0.99 + 1e-6


def test_a_fixed_snr_is_met_and_the_noise_is_returned_as_a_source(
    corpus: Path, tmp_path: Path
) -> None:
    ds = _train(corpus, tmp_path, noise="shipped", noise_snr_db=(5.0, 5.0), noise_as_source=True)
    for i in range(4):
        ex = ds[i]
        assert ex.noise is not None and ex.sources.shape == (3, 8000)
        torch.testing.assert_close(ex.sources[2], ex.noise)
        speech = ex.sources[:2].numpy()
        assert _snr_db(speech, ex.noise.numpy()) == pytest.approx(5.0, abs=1e-3)
        torch.testing.assert_close(ex.mix, ex.sources.sum(0), atol=1e-6, rtol=0)
    valid = build_dataset(ds.cfg, "valid", train=False, seed=0, cache_path=tmp_path / "v.json")
    ex = valid[0]
    assert ex.noise is not None and ex.sources.shape[0] == 3
    torch.testing.assert_close(ex.mix, ex.sources.sum(0), atol=1e-5, rtol=0)


def test_clean_training_draws_what_it_drew_before(corpus: Path, tmp_path: Path) -> None:
    """Without noise nothing changes: an example is the clean mixer's mixture, no noise."""
    ds = _train(corpus, tmp_path)
    assert ds.noise is None
    for i in range(3):
        ex = ds[i]
        sources, _ = ds.mixer.make(example_rng(SEED, 0, i, 3), 8000)  # type: ignore[union-attr]
        assert ex.noise is None
        assert torch.equal(ex.sources, torch.from_numpy(sources))
        assert torch.equal(ex.mix, torch.from_numpy(sources.sum(0)))


# ---------------------------------------------------------------- determinism and resume


def _batches(ds: SeparationDataset, workers: int, start: int = 0) -> list[torch.Tensor]:
    sampler = ResumableSampler(len(ds), seed=SEED, shuffle=True)
    sampler.set_epoch(2)
    sampler.set_start(start)
    ds.set_epoch(2)
    loader = DataLoader(ds, batch_size=4, sampler=sampler, collate_fn=collate, num_workers=workers)
    return [torch.cat([b.mix, b.noise]) for b in loader]  # type: ignore[list-item]


def test_same_noisy_mixture_per_seed_epoch_index_and_after_resume(
    corpus: Path, tmp_path: Path
) -> None:
    a = _train(corpus, tmp_path, noise="shipped", speed_perturb=True)
    b = _train(corpus, tmp_path, noise="shipped", speed_perturb=True)
    for epoch in (0, 1):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        assert all(torch.equal(a[i].mix, b[i].mix) for i in range(4))
    a.set_epoch(0)
    first = a[0].noise
    a.set_epoch(1)
    assert not torch.equal(first, a[0].noise)  # type: ignore[arg-type]
    serial = _batches(a, 0)
    assert len(serial) == 4
    assert all(torch.equal(x, y) for x, y in zip(serial, _batches(b, 2), strict=True))
    resumed = _batches(b, 0, start=8)  # crashed after two batches of four
    assert all(torch.equal(x, y) for x, y in zip(serial[2:], resumed, strict=True))


@pytest.mark.timeout(300)
def test_a_stopped_and_resumed_noisy_run_ends_bit_identical(corpus: Path, tmp_path: Path) -> None:
    overrides = [
        f"data.root={corpus}",
        "data.noise=shipped",
        "data.batch_size=2",
        "data.mixtures_per_epoch=6",
        "data.training_signal_len=4000",
        "train.max_minutes=null",
        "train.checkpoint_every_minutes=null",
        "train.progress_bar=false",
        "train.ema_decay=null",
        *TINY_MODEL,
    ]

    assert resume_matches_uninterrupted("demo-noisy.yaml", overrides, tmp_path)


# ----------------------------------------------------------------------- held-out noise


def test_valid_and_test_noise_never_overlap_training_noise(corpus: Path) -> None:
    files = sorted(SHIPPED.glob("*.flac"))
    assert [f.name for f in files] == [
        "doing_the_dishes.flac",
        "dude_miaowing.flac",
        "exercise_bike.flac",
        "running_tap.flac",
    ]
    for f in files:
        frames = sf.info(str(f)).frames
        parts = [segment_bounds(frames, s) for s in ("train", "valid", "test")]
        assert parts[0][0] == 0 and parts[-1][1] == frames
        assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))  # disjoint
        assert parts[0][1] >= 0.79 * frames  # training keeps 80 % of every recording
    # Every crop of a split's pool stays inside that split's part, resampling context included.
    for split in ("train", "valid", "test"):
        pool = NoisePool.load("shipped", split, 8000, (-6.0, 3.0), need=12000)
        rng = np.random.default_rng(0)
        for _ in range(200):
            _, seg, start = pool.crop(rng, 12000)
            lo, hi = segment_bounds(sf.info(str(seg.path)).frames, split)
            assert (seg.start, seg.stop) == (lo, hi)
            assert lo <= start and start + 24000 <= hi
    # The fixed valid/test mixtures of `sepkit prepare --noise` hold held-out noise: each noise
    # track is the stretch its row names, of the last 20 % of the recording, resampled.
    for split in ("valid", "test"):
        with (corpus / f"{split}.csv").open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert len(rows) == 3
        for row in rows:
            path = SHIPPED / row["noise_file"]
            x, rate = sf.read(str(path), dtype="float32")
            lo, hi = segment_bounds(len(x), split)
            start, stop = int(row["noise_start"]), int(row["noise_stop"])
            assert lo <= start < stop <= hi and start >= SPLITS["valid"][0] * len(x)
            noise, _ = sf.read(str(corpus / row["noise_path"]), dtype="float64")
            ref = resample_exact(x, rate, 8000)[start // 2 : start // 2 + len(noise)]
            ref = ref * np.dot(noise, ref) / np.dot(ref, ref)  # the same up to the SNR's gain
            assert np.abs(noise - ref).max() < 1e-5 * np.abs(noise).max() + 1e-7
            mix = sf.read(str(corpus / row["mix_path"]), dtype="float64")[0]
            s = np.stack([sf.read(str(corpus / row[f"s{k}_path"]))[0] for k in (1, 2)])
            np.testing.assert_allclose(mix, s.sum(0) + noise, atol=1e-6)
            assert _snr_db(s, noise) == pytest.approx(float(row["noise_snr_db"]), abs=1e-3)
            assert -6.0 <= float(row["noise_snr_db"]) <= 3.0


def test_noisy_prepare_keeps_the_clean_mixtures_and_is_reused(corpus: Path, tmp_path: Path) -> None:
    clean = prepared(tmp_path / "clean", noise="none")
    for split in ("valid", "test"):
        with (corpus / f"{split}.csv").open() as a, (clean / f"{split}.csv").open() as b:
            noisy_rows, clean_rows = list(csv.DictReader(a)), list(csv.DictReader(b))
        assert [r["id"] for r in noisy_rows] == [r["id"] for r in clean_rows]
        assert "noise_path" not in clean_rows[0]
    summary = json.loads((corpus / "corpus.json").read_text())["summary"]
    assert summary["noise"] == {"pool": "shipped", "snr_db": [-6.0, 3.0]}
    spec = PrepareSpec(
        valid_speakers=2, test_speakers=2, n_valid=3, n_test=3, mix_seconds=1.5, noise="shipped"
    )
    assert prepare_corpus(REAL_SPEECH, corpus, spec)["reused"] is True


def test_noise_on_a_clean_fixed_training_split(tmp_path: Path) -> None:
    """WHAM!'s mix_clean with sepkit's noise on top: crops of the fixed mixtures draw what they
    drew before, and the noise comes from its own stream. With the corpus's own noise too
    (data.use_noise), the mixtures would get noise twice: refused, naming both keys."""
    root = wham_corpus(tmp_path / "wham", count=3, seconds=1.0)
    kw = {"root": str(root), "format": "wsj0-mix", "training_signal_len": 4000}
    clean = build_dataset(DataConfig(**kw), "train", train=True, seed=SEED)  # type: ignore[arg-type]
    noisy = build_dataset(DataConfig(**kw, noise="shipped"), "train", train=True, seed=SEED)  # type: ignore[arg-type]
    assert noisy.records[0].mix.parent.name == "mix_clean"
    for i in range(3):
        ex, ref = noisy[i], clean[i]
        assert ex.noise is not None and ref.noise is None
        scale = float(ex.sources.abs().max() / ref.sources.abs().max())
        torch.testing.assert_close(ex.sources, ref.sources * scale, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(ex.mix, ref.mix * scale + ex.noise, atol=1e-6, rtol=0)
        drawn = example_rng(SEED, 0, i, STREAM_NOISE).uniform(-6.0, 3.0)
        assert _snr_db(ex.sources.numpy(), ex.noise.numpy()) == pytest.approx(drawn, abs=1e-3)
    both = DataConfig(**kw, noise="shipped", use_noise=True)  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"data\.noise: .*\(data\.use_noise=true\)"):
        build_dataset(both, "train", train=True, seed=SEED)


# ------------------------------------------------------------------------- the recipes


@pytest.mark.timeout(300)
@pytest.mark.parametrize("recipe", ["demo-noisy.yaml", "enhance-noisy.yaml"])
def test_prepared_corpus_recipes_train_two_steps(recipe: str, tmp_path: Path) -> None:
    spks = 1 if recipe.startswith("enhance") else 2
    root = prepared(tmp_path / "corpus", num_spks=spks, n_valid=2, n_test=2)
    summary = train_recipe_two_steps(recipe, root, tmp_path / "run", "data.mixtures_per_epoch=4")
    assert summary["updates"] == 2


@pytest.mark.timeout(300)
def test_the_noise_as_an_extra_source_trains_and_tests(tmp_path: Path) -> None:
    root = prepared(tmp_path / "corpus", n_valid=2, n_test=2)
    extra = ["data.noise_as_source=true", "model.num_spks=3", "data.mixtures_per_epoch=4"]
    summary = train_recipe_two_steps("demo-noisy.yaml", root, tmp_path / "run", *extra, *TINY_MODEL)
    assert summary["updates"] == 2


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("recipe", "layout"),
    [
        ("convtasnet-wham.yaml", "wham"),
        ("sepformer-wham.yaml", "wham"),
        ("convtasnet-libri2mix-noisy.yaml", "libri2mix"),
    ],
)
def test_published_noisy_recipes_train_two_steps(recipe: str, layout: str, tmp_path: Path) -> None:
    build = wham_corpus if layout == "wham" else libri2mix_corpus
    root = build(tmp_path / layout, count=3, seconds=1.0)
    cfg = load_recipe(RECIPES / recipe, [f"data.root={root}"])
    assert cfg.data.use_noise
    data = build_dataset(cfg.data, "valid", train=False, seed=0, cache_path=tmp_path / "v.json")
    assert data.records[0].mix.parent.name == "mix_both" and data[0].noise is not None
    summary = train_recipe_two_steps(
        recipe,
        root,
        tmp_path / "run",
        "data.limit_training_signal_len=true",
        "data.training_signal_len=4000",
    )
    assert summary["updates"] == 2


# ------------------------------------------------------------------------- bad noise input


def _noise_folder(tmp_path: Path, name: str, x: np.ndarray, rate: int = 8000) -> Path:
    folder = tmp_path / "noise"
    folder.mkdir(exist_ok=True)
    for f in sorted(SHIPPED.glob("*.flac"))[:2]:  # good company: only the bad file is named
        shutil.copy(f, folder / f.name)
    sf.write(str(folder / name), x, rate, subtype="FLOAT")
    return folder


def _real_noise(seconds: float, rate: int = 16000) -> np.ndarray:
    x, file_rate = sf.read(str(SHIPPED / "running_tap.flac"), dtype="float32")
    return resample_exact(x[: int(seconds * file_rate)], file_rate, rate)


@pytest.mark.parametrize(
    ("name", "signal", "expected"),
    [
        ("short.wav", _real_noise(1.0, 8000), r"short\.wav: too short: its train part lasts 6400 "
         r"samples at 8000 Hz \(0\.80 s\), a mixture needs 8000 \(1\.00 s\)"),
        ("silent.wav", np.zeros(80000, np.float32), r"silent\.wav: silent: its train part has"),
        ("nan.wav", np.where(np.arange(80000) == 500, np.nan, 0.01).astype(np.float32),
         r"nan\.wav: non-finite samples \(NaN or inf\)"),
    ],
)  # fmt: skip
def test_bad_noise_files_are_named_and_nothing_is_written(
    corpus: Path, tmp_path: Path, name: str, signal: np.ndarray, expected: str
) -> None:
    folder = _noise_folder(tmp_path, name, signal)
    cfg = DataConfig(root=str(corpus), training_signal_len=8000, noise=str(folder))
    with pytest.raises(DataError, match=r"data\.noise=.*1 of 3 noise recordings") as err:
        build_dataset(cfg, "train", train=True, seed=0, cache_path=tmp_path / "v.json")
    assert len(err.value.problems) == 1
    assert err.match(expected)
    # `sepkit prepare --noise` checks the held-out parts before writing anything.
    out = tmp_path / "out"
    spec = PrepareSpec(valid_speakers=2, test_speakers=2, mix_seconds=1.0, noise=str(folder))
    with pytest.raises(DataError, match=rf"(?s)--noise=.*{name}"):
        prepare_corpus(REAL_SPEECH, out, spec)
    assert not out.exists()


def test_noise_at_another_rate_is_resampled(corpus: Path, tmp_path: Path) -> None:
    """Like speech in `sepkit prepare`: 22.05 kHz noise serves an 8 kHz corpus."""
    folder = tmp_path / "noise44"
    folder.mkdir()
    sf.write(str(folder / "tap.flac"), _real_noise(8.0, 22050), 22050)
    ds = _train(corpus, tmp_path, noise=str(folder))
    assert ds.noise is not None and ds.noise.segments[0].rate == 22050
    assert ds.noise.segments[0].frames == int(0.8 * 8.0 * 22050) * 8000 // 22050
    ex = ds[0]
    assert ex.noise is not None and ex.noise.shape == (8000,)
    assert bool(torch.isfinite(ex.noise).all()) and float(ex.noise.abs().max()) > 0


def test_bad_noise_settings_name_the_key(corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.noise_snr_db: need finite \[low, high\] with "
                       r"low <= high, got \[3\.0, -6\.0\]"):  # fmt: skip
        load_recipe(RECIPES / "demo-noisy.yaml", ["data.noise_snr_db=[3, -6]"])
    with pytest.raises(ConfigError, match=r"data\.noise_as_source: there is no noise"):
        load_recipe(RECIPES / "demo.yaml", ["data.noise_as_source=true"])
    with pytest.raises(ConfigError, match=r"data\.noise: use none, shipped"):
        load_recipe(RECIPES / "demo.yaml", ["data.noise=' '"])
    cfg = DataConfig(root=str(corpus), noise=str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=r"data\.noise=.*nowhere: no such folder"):
        build_dataset(cfg, "train", train=True, seed=0, cache_path=tmp_path / "v.json")
    (tmp_path / "empty").mkdir()
    cfg = DataConfig(root=str(corpus), noise=str(tmp_path / "empty"))
    with pytest.raises(DataError, match=r"data\.noise=.*holds no audio files"):
        build_dataset(cfg, "train", train=True, seed=0, cache_path=tmp_path / "v.json")
    spec = PrepareSpec(valid_speakers=2, test_speakers=2, noise="shipped", noise_snr_db=(3, -6))
    with pytest.raises(DataError, match=r"--noise-snr-db: need LOW <= HIGH, got 3 -6"):
        prepare_corpus(REAL_SPEECH, tmp_path / "out", spec)
    assert not (tmp_path / "out").exists()
