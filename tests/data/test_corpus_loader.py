"""The loader on each published layout, built in temp folders from generated speech."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import soundfile as sf
import torch

from sepkit.data import DataConfig, DataError, build_dataset, collate


def _rows(root: Path, split: str) -> list[dict[str, str]]:
    with (root / f"{split}.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _wsj_tree(src: Path, dst: Path, n_src: int = 2) -> list[str]:
    """A wsj0-2mix-shaped copy: tr/cv/tt with wsj-style names (speaker = first 3 characters)."""
    names = []
    for split, folder in (("train", "tr"), ("valid", "cv"), ("test", "tt")):
        for i, row in enumerate(_rows(src, split)):
            name = f"{i:03d}c0{i:03d}_1.{i:04d}_{i + 100:03d}c0{i:03d}_-1.{i:04d}"
            names.append(name)
            for sub, key in [
                ("mix", "mix_path"),
                *((f"s{k + 1}", f"s{k + 1}_path") for k in range(n_src)),
            ]:
                (dst / folder / sub).mkdir(parents=True, exist_ok=True)
                shutil.copy(src / row[key], dst / folder / sub / f"{name}.wav")
    return names


def test_manifest_layout(demo_corpus: Path, tmp_path: Path) -> None:
    cfg = DataConfig(root=str(demo_corpus), training_signal_len=8000)
    train = build_dataset(cfg, "train", train=True, seed=0, cache_path=tmp_path / "v.json")
    assert len(train) == 24
    ex = train[0]
    assert ex.mix.dtype == torch.float32 and ex.mix.shape == (8000,)
    assert ex.sources.shape == (2, 8000) and ex.noise is None
    torch.testing.assert_close(ex.mix, ex.sources.sum(0), atol=1e-4, rtol=0)
    test = build_dataset(cfg, "test", train=False, seed=0, cache_path=tmp_path / "v.json")
    rows = _rows(demo_corpus, "test")
    assert [test[i].mix.shape[0] for i in range(len(test))] == [int(r["length"]) for r in rows]
    batch = collate([test[i] for i in range(4)])
    assert batch.sources.shape[:2] == (4, 2)
    assert batch.lengths is not None and int(batch.lengths.max()) == batch.mix.shape[1]
    first = _rows(demo_corpus, "train")[0]
    assert train.records[0].speakers == (first["speaker_1"], first["speaker_2"])


def test_wsj0_2mix_folders(demo_corpus: Path, tmp_path: Path) -> None:
    root = tmp_path / "wsj0-2mix" / "wav8k" / "min"
    _wsj_tree(demo_corpus, root)
    cfg = DataConfig(root=str(root), limit_training_signal_len=False)
    for split, n in (("train", 24), ("valid", 8), ("test", 8)):
        ds = build_dataset(cfg, split, train=split == "train", seed=0)
        assert len(ds) == n
    ds = build_dataset(cfg, "train", train=True, seed=0)
    rec = ds.records[1]
    assert rec.mix.parent.parent.name == "tr"
    assert rec.speakers == ("001", "101")
    ex = ds[1]
    expected, _ = sf.read(rec.mix, dtype="float32")
    torch.testing.assert_close(ex.mix, torch.from_numpy(expected))
    # explicit folder names work too, and a 3-source model on a 2-source corpus is refused
    ok = build_dataset(DataConfig(root=str(root), train_split="cv"), "train", train=False, seed=0)
    assert len(ok) == 8
    with pytest.raises(DataError, match="num_spks"):
        build_dataset(DataConfig(root=str(root), num_spks=3), "train", train=True, seed=0)


def test_librimix_csv_with_foreign_absolute_paths_and_noise(tmp_path: Path) -> None:
    from sepkit.data.synthetic.generate import CorpusSpec, generate_corpus

    corpus = tmp_path / "gen"
    spec = CorpusSpec(
        n_train=4, n_valid=1, n_test=1, noise=True, seed=9, utterance_seconds=(2.0, 2.5)
    )
    generate_corpus(corpus, spec, progress=False, workers=1)
    root = tmp_path / "Libri2Mix" / "wav8k" / "min"
    meta = root / "metadata"
    meta.mkdir(parents=True)
    with (meta / "mixture_train-360_mix_both.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["mixture_ID", "mixture_path", "source_1_path", "source_2_path", "noise_path", "length"]
        )
        for i, row in enumerate(_rows(corpus, "train")):
            mid = f"{19 + i}-198-000{i}_{1088 + i}-134315-000{i}"
            paths = []
            for sub, key in (
                ("mix_both", "mix_path"),
                ("s1", "s1_path"),
                ("s2", "s2_path"),
                ("noise", "noise_path"),
            ):
                target = root / "train-360" / sub / f"{mid}.wav"
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(corpus / row[key], target)
                # as published: absolute paths from the machine that made the metadata
                paths.append(f"/home/someone/data/Libri2Mix/wav8k/min/train-360/{sub}/{mid}.wav")
            w.writerow([mid, *paths, row["length"]])
    cfg = DataConfig(root=str(root), use_noise=True, limit_training_signal_len=False)
    ds = build_dataset(cfg, "train", train=True, seed=0)
    assert len(ds) == 4
    assert ds.records[0].speakers == ("19", "1088")
    ex = ds[0]
    assert ex.noise is not None and ex.noise.shape == ex.mix.shape
    torch.testing.assert_close(ex.mix, ex.sources.sum(0) + ex.noise, atol=1e-4, rtol=0)
    # the same CSV named explicitly, relative to the root
    cfg2 = DataConfig(root=str(root), train_split="metadata/mixture_train-360_mix_both.csv")
    assert len(build_dataset(cfg2, "train", train=False, seed=0)) == 4


def test_missing_split_names_what_was_tried(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data split 'valid'.*data.valid_split"):
        build_dataset(DataConfig(root=str(tmp_path)), "valid", train=False, seed=0)
