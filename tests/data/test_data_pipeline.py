"""Random crop, speed perturbation and dynamic mixing: seeded per (seed, epoch, index) only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from sepkit.data import DataConfig, build_dataset, collate
from sepkit.data.augment import speed_factor
from sepkit.data.dataset import SeparationDataset
from sepkit.data.sampler import ResumableSampler


def _train(root: Path, tmp_path: Path, **kw: object) -> SeparationDataset:
    cfg = DataConfig(root=str(root), training_signal_len=8000, **kw)  # type: ignore[arg-type]
    return build_dataset(cfg, "train", train=True, seed=11, cache_path=tmp_path / "v.json")


def _same(a: SeparationDataset, b: SeparationDataset, i: int) -> bool:
    x, y = a[i], b[i]
    return x.mix.shape == y.mix.shape and bool(torch.equal(x.sources, y.sources))


def test_random_crop_reproducible_per_epoch(demo_corpus: Path, tmp_path: Path) -> None:
    a, b = _train(demo_corpus, tmp_path), _train(demo_corpus, tmp_path)
    long = [i for i, n in enumerate(a.lengths) if n > 12000]
    assert long
    i = long[0]
    a.set_epoch(2)
    b.set_epoch(2)
    assert a[i].mix.shape == (8000,) and _same(a, b, i)
    starts = set()
    for epoch in range(4):
        a.set_epoch(epoch)
        ex = a[i]
        torch.testing.assert_close(ex.mix, ex.sources.sum(0), atol=1e-4, rtol=0)
        starts.add(ex.mix[:50].sum().item())
    assert len(starts) > 1  # a different crop in different epochs


def test_speed_perturbation(demo_corpus: Path, tmp_path: Path) -> None:
    plain = _train(demo_corpus, tmp_path, limit_training_signal_len=False)
    fast = _train(demo_corpus, tmp_path, limit_training_signal_len=False, speed_perturb=True,
                  speed_perturb_range=(1.1, 1.1))  # fmt: skip
    ratio = plain[0].mix.shape[0] / fast[0].mix.shape[0]
    assert ratio == pytest.approx(1.1, abs=0.01)
    ex = fast[0]
    torch.testing.assert_close(ex.mix, ex.sources.sum(0), atol=2e-3, rtol=0)
    cropped = _train(demo_corpus, tmp_path, speed_perturb=True)
    assert all(cropped[i].mix.shape[0] <= 8000 for i in range(4))


def test_speed_factors_are_uniform_on_the_grid() -> None:
    """Factors on the 0.01 grid (soxr's fast path for k/100 ratios), every grid point of the range
    about equally often; a range between two grid points falls back to a continuous draw."""
    rng = np.random.default_rng(0)
    draws = [speed_factor(rng, 0.85, 1.15) for _ in range(31_000)]
    values, counts = np.unique(draws, return_counts=True)
    np.testing.assert_allclose(values, np.round(np.arange(85, 116) * 0.01, 6))
    assert counts.min() > 850 and counts.max() < 1150  # 1000 each expected, endpoints included
    assert 0.951 <= speed_factor(rng, 0.951, 0.952) <= 0.952
    assert speed_factor(rng, 1.1, 1.1) == 1.1


def test_dynamic_mixing_reproducible_and_new_each_epoch(demo_corpus: Path, tmp_path: Path) -> None:
    a = _train(demo_corpus, tmp_path, dynamic_mixing=True)
    b = _train(demo_corpus, tmp_path, dynamic_mixing=True)
    assert a.mixer is not None
    for epoch in (0, 5):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        assert all(_same(a, b, i) for i in range(3))
    a.set_epoch(0)
    first = [a[i].sources for i in range(3)]
    a.set_epoch(1)
    assert not any(torch.equal(f, a[i].sources) for i, f in enumerate(first))
    ex = a[0]
    assert ex.sources.shape == (2, ex.mix.shape[0]) and ex.mix.shape[0] <= 8000
    torch.testing.assert_close(ex.mix, ex.sources.sum(0))
    # speakers are drawn without replacement within a mixture
    for i in range(30):
        rng = np.random.default_rng([11, 0, i, 99])
        _, speakers = a.mixer.make(rng, 8000)
        assert len(set(speakers)) == 2


def _batches(ds: SeparationDataset, workers: int, start: int = 0) -> list[torch.Tensor]:
    sampler = ResumableSampler(len(ds), seed=11, shuffle=True)
    sampler.set_epoch(3)
    sampler.set_start(start)
    ds.set_epoch(3)
    loader = DataLoader(ds, batch_size=4, sampler=sampler, collate_fn=collate, num_workers=workers)
    return [b.mix for b in loader]


def test_same_batches_whatever_the_workers_and_after_resume(
    demo_corpus: Path, tmp_path: Path
) -> None:
    ds = _train(demo_corpus, tmp_path, dynamic_mixing=True, speed_perturb=True)
    serial = _batches(ds, 0)
    parallel = _batches(ds, 2)
    assert len(serial) == len(parallel) == 6
    assert all(torch.equal(x, y) for x, y in zip(serial, parallel, strict=True))
    resumed = _batches(ds, 0, start=8)  # crashed after two batches of four
    assert all(torch.equal(x, y) for x, y in zip(serial[2:], resumed, strict=True))


def test_dynamic_mixing_never_mixes_one_voice_with_itself(
    demo_corpus: Path, tmp_path: Path
) -> None:
    """The built-in corpus's manifest names each speaker's voice family (``family_k``): the pool
    is keyed by family, so a mixture never holds two near-copies of one voice."""
    ds = _train(demo_corpus, tmp_path, dynamic_mixing=True)
    assert ds.mixer is not None
    records = ds.records
    assert all(len(r.voices) == 2 for r in records)
    voice_of_file = {s: v for r in records for s, v in zip(r.sources, r.voices, strict=True)}
    assert set(ds.mixer.speakers) == set(voice_of_file.values())
    for voice, files in zip(ds.mixer.speakers, ds.mixer.pool, strict=True):
        assert {voice_of_file[path] for path, _ in files} == {voice}
    # several speakers share a family; without voices each speaker would be its own entry
    speakers = {spk for r in records for spk in r.speakers}
    assert len(ds.mixer.speakers) < len(speakers)
