"""`sepkit prepare`: a corpus from folders of real single-speaker recordings, and bad input.

Every test builds its input from the real LibriSpeech recordings shipped in the package, laid out
as a user's copy would be (LibriSpeech, VCTK, a CSV), and reads back what was written to disk.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from helpers.training import TINY_MODEL

from sepkit.data import build_dataset
from sepkit.data.errors import DataError
from sepkit.data.prepare import PrepareSpec, assign_speakers, describe, prepare_corpus
from sepkit.demo import REAL_SPEECH, RECIPES
from sepkit.recipe import load_recipe
from sepkit.run import train

SMALL = PrepareSpec(valid_speakers=2, test_speakers=2, n_valid=6, n_test=8, mix_seconds=2.0)


def _shipped(n_female: int, n_male: int) -> list[tuple[str, str, Path]]:
    """(speaker, gender, file) of the first speakers of each gender in the shipped corpus whose
    recording lasts at least 6 s (a few are under 2 s)."""
    rows = []
    for line in (REAL_SPEECH / "SPEAKERS.TXT").read_text().splitlines():
        if not line.startswith(";"):
            spk, gender = (p.strip() for p in line.split("|")[:2])
            path = next((REAL_SPEECH / spk).rglob("*.flac"))
            if sf.info(str(path)).duration >= 6.0:
                rows.append((spk, gender, path))
    female = [r for r in rows if r[1] == "F"][:n_female]
    male = [r for r in rows if r[1] == "M"][:n_male]
    return female + male


def librispeech_folder(root: Path, n_female: int = 4, n_male: int = 4, halves: bool = True) -> Path:
    """A LibriSpeech-layout copy (``SPEAKER/CHAPTER/*.flac``, ``SPEAKERS.TXT``, transcripts).

    With ``halves`` every recording but the first speaker's is cut in two files, so speakers
    have several recordings and one has a single one."""
    lines = [";ID  |SEX| SUBSET           |MINUTES| NAME"]
    for k, (spk, gender, src) in enumerate(_shipped(n_female, n_male)):
        chapter = root / spk / src.parent.name
        chapter.mkdir(parents=True)
        x, rate = sf.read(str(src), dtype="float32")
        parts = [x] if (k == 0 or not halves) else [x[: len(x) // 2], x[len(x) // 2 :]]
        for i, part in enumerate(parts):
            sf.write(str(chapter / f"{src.stem[:-4]}{i:04d}.flac"), part, rate)
        (chapter / f"{spk}-{src.parent.name}.trans.txt").write_text("TEXT\n")
        lines.append(f"{spk:<5}| {gender} | train-clean-100  | 0.2 | -")
    (root / "SPEAKERS.TXT").write_text("\n".join(lines) + "\n")
    return root


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_librispeech_layout_gives_disjoint_deterministic_splits(tmp_path: Path) -> None:
    source = librispeech_folder(tmp_path / "LibriSpeech")
    summary = prepare_corpus(source, tmp_path / "a", SMALL)
    assert summary["speakers"] == {"test": 2, "valid": 2, "train": 4}
    assert summary["single_recording_speakers"] == 1  # accepted: one recording is enough
    assert summary["ignored_files"] == 8  # the transcripts
    # Each held-out split has one female and one male speaker: the gender balance is kept.
    assert summary["genders"]["test"] == {"F": 1, "M": 1}
    speakers = {r["speaker"]: r["split"] for r in _csv(tmp_path / "a" / "speakers.csv")}
    train_rows = _csv(tmp_path / "a" / "train.csv")
    assert {r["speaker"] for r in train_rows} == {s for s, sp in speakers.items() if sp == "train"}
    for split in ("valid", "test"):
        rows = _csv(tmp_path / "a" / f"{split}.csv")
        assert len(rows) == (6 if split == "valid" else 8)
        for row in rows:
            assert speakers[row["speaker_1"]] == split == speakers[row["speaker_2"]]
            assert row["speaker_1"] != row["speaker_2"]
            mix, rate = sf.read(str(tmp_path / "a" / row["mix_path"]))
            s1, _ = sf.read(str(tmp_path / "a" / row["s1_path"]))
            s2, _ = sf.read(str(tmp_path / "a" / row["s2_path"]))
            assert rate == 8000 and len(mix) == 16000
            np.testing.assert_allclose(mix, s1 + s2, atol=1e-6)
            assert np.abs(mix).max() < 1.0
    # The same input and seed give the same corpus, byte for byte; a re-run reuses it.
    prepare_corpus(source, tmp_path / "b", SMALL)
    for name in ("speakers.csv", "test.csv", "valid.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    first = _csv(tmp_path / "a" / "test.csv")[0]["mix_path"]
    same = [sf.read(str(tmp_path / run / first))[0] for run in ("a", "b")]
    np.testing.assert_array_equal(*same)  # (the WAV header holds a time stamp)
    assert prepare_corpus(source, tmp_path / "a", SMALL)["reused"] is True


def test_speaker_assignment_is_stable_and_balanced() -> None:
    genders = {f"{i}": "F" if i % 3 else "M" for i in range(60)}
    spec = PrepareSpec(valid_speakers=6, test_speakers=9)
    split = assign_speakers(genders, spec)
    assert split == assign_speakers(dict(reversed(genders.items())), spec)
    test = [s for s, sp in split.items() if sp == "test"]
    assert sum(genders[s] == "M" for s in test) == 3  # a third of the speakers are male
    assert split != assign_speakers(genders, PrepareSpec(valid_speakers=6, test_speakers=9, seed=1))


def test_a_few_training_steps_on_a_prepared_corpus(tmp_path: Path) -> None:
    source = librispeech_folder(tmp_path / "LibriSpeech")
    corpus = tmp_path / "corpus"
    prepare_corpus(source, corpus, SMALL)
    overrides = [
        f"data.root={corpus}",
        "data.batch_size=2",
        "data.mixtures_per_epoch=8",
        "train.epochs=2",
        "train.max_minutes=null",
        "train.checkpoint_every_minutes=null",
        "train.progress_bar=false",
        "train.test_shifts=1",
        "train.save_audio=false",
        *TINY_MODEL,
    ]
    cfg = load_recipe(RECIPES["real"], overrides)
    torch.manual_seed(0)
    summary = train(cfg, tmp_path / "run", test_after=True)
    assert summary["steps"] == 8 and summary["updates"] == 8
    test = json.loads((tmp_path / "run" / "test_summary.json").read_text())
    assert test["num_utterances"] == 8
    assert test["test_set"]["kind"] == "real"
    assert "2 speakers of LibriSpeech never heard in training" in test["test_set"]["text"]
    pairs = test["by_gender_pair"]
    assert sum(v["count"] for k, v in pairs.items() if k != "same-gender") == 8
    # Training examples are fresh mixtures of training speakers, and their IDs say which.
    data = build_dataset(cfg.data, "train", train=True, seed=0, cache_path=tmp_path / "v.json")
    train_speakers = {r["speaker"] for r in _csv(corpus / "train.csv")}
    assert len(data) == 8
    for i in range(len(data)):
        example = data[i]
        pair = example.id.split("@")[0].split("+")
        assert len(set(pair)) == 2 and set(pair) <= train_speakers
        assert example.mix.shape == (cfg.data.training_signal_len,)
        torch.testing.assert_close(example.mix, example.sources.sum(0))


# ------------------------------------------------------------------------------- bad input


def test_empty_folder_is_named(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no recordings found"):
        prepare_corpus(tmp_path / "empty", tmp_path / "out", SMALL)
    assert not (tmp_path / "out").exists()


def test_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere: no such folder"):
        prepare_corpus(tmp_path / "nowhere", tmp_path / "out", SMALL)


def test_folder_with_one_speaker_is_refused(tmp_path: Path) -> None:
    source = librispeech_folder(tmp_path / "src", n_female=1, n_male=0)
    with pytest.raises(DataError, match=r"1 speaker\(s\) found: 2-speaker mixtures need"):
        prepare_corpus(source, tmp_path / "out", SMALL)
    assert not (tmp_path / "out").exists()


def test_non_audio_file_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    source = librispeech_folder(tmp_path / "src")
    bad = next(source.glob("*/*")) / "notes.flac"
    bad.write_text("this is not audio")
    with pytest.raises(DataError) as err:
        prepare_corpus(source, tmp_path / "out", SMALL)
    assert str(bad) in str(err.value) and "unreadable: not audio" in str(err.value)
    assert "--skip-bad" in str(err.value)
    assert not (tmp_path / "out").exists()
    # --skip-bad leaves it out, lists it, and keeps the rest.
    summary = prepare_corpus(source, tmp_path / "out", SMALL, skip_bad=True)
    assert summary["bad_recordings"] == 1
    listed = _csv(tmp_path / "out" / "bad_recordings.csv")
    assert [r["file"] for r in listed] == [str(bad)]
    assert str(bad) not in (tmp_path / "out" / "train.csv").read_text()
    assert bad.read_text() == "this is not audio"  # the input is never touched


def test_nan_and_silent_recordings_are_named(tmp_path: Path) -> None:
    source = librispeech_folder(tmp_path / "src")
    folder = next(source.glob("*/*"))
    sf.write(str(folder / "nan.wav"), np.full(16000, np.nan, np.float32), 8000, subtype="FLOAT")
    sf.write(str(folder / "zeros.wav"), np.zeros(16000, np.float32), 8000)
    with pytest.raises(DataError) as err:
        prepare_corpus(source, tmp_path / "out", SMALL)
    text = str(err.value)
    assert "2 of" in text
    assert f"{folder / 'nan.wav'}: non-finite samples" in text
    assert f"{folder / 'zeros.wav'}: silent" in text


def test_mixed_sample_rates_are_resampled_and_said(tmp_path: Path) -> None:
    source = librispeech_folder(tmp_path / "src")
    wide = sorted(source.rglob("*.flac"))[-1]
    x, rate = sf.read(str(wide), dtype="float32")
    wide.unlink()
    sf.write(str(wide.with_suffix(".wav")), soxr.resample(x, rate, 16000), 16000)
    summary = prepare_corpus(source, tmp_path / "out", SMALL)
    assert summary["resampled"] == {"16000 Hz": 1}
    assert "resampled to 8000 Hz: 1 at 16000 Hz" in describe(summary)
    converted = [
        p for p in (tmp_path / "out").rglob(f"{wide.stem}.flac") if "utterances" in str(p)
        or p.parent.parent.name == "train"
    ]  # fmt: skip
    assert len(converted) == 1 and sf.info(str(converted[0])).samplerate == 8000
    assert sf.info(str(converted[0])).frames == pytest.approx(len(x), abs=2)


def test_output_folder_of_other_files_is_refused(tmp_path: Path) -> None:
    source = librispeech_folder(tmp_path / "src")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(DataError, match=r"mine: the folder is not empty and is not a corpus"):
        prepare_corpus(source, out, SMALL)
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]


def test_vctk_layout_and_its_speaker_info(tmp_path: Path) -> None:
    root = tmp_path / "VCTK"
    info = ["ID  AGE  GENDER  ACCENTS  REGION"]
    for k, (_spk, gender, src) in enumerate(_shipped(3, 3)):
        folder = root / "wav48" / f"p{225 + k}"
        folder.mkdir(parents=True)
        x, rate = sf.read(str(src), dtype="float32")
        for i in range(2):
            sf.write(
                str(folder / f"p{225 + k}_{i:03d}.wav"), x[i * len(x) // 2 :][: len(x) // 2], rate
            )
        info.append(f"{225 + k}  23  {gender}  English  Southern")
    (root / "speaker-info.txt").write_text("\n".join(info) + "\n")
    summary = prepare_corpus(root / "wav48", tmp_path / "out", SMALL)
    assert summary["genders"]["train"] == {"F": 1, "M": 1}
    assert {r["speaker"] for r in _csv(tmp_path / "out" / "speakers.csv")} == {
        f"p{225 + k}" for k in range(6)
    }


def test_csv_of_recordings(tmp_path: Path) -> None:
    lines = ["path,speaker,gender"]
    for spk, gender, src in _shipped(3, 3):
        lines.append(f"{src},{spk},{gender}")
    (tmp_path / "list.csv").write_text("\n".join(lines) + "\n")
    summary = prepare_corpus(tmp_path / "list.csv", tmp_path / "out", SMALL)
    assert summary["layout"] == "CSV list.csv" and summary["recordings"] == 6
    (tmp_path / "bad.csv").write_text("file,who\nx.wav,a\n")
    with pytest.raises(DataError, match=r"bad.csv: missing column path, speaker"):
        prepare_corpus(tmp_path / "bad.csv", tmp_path / "out2", SMALL)


def test_cli_reports_bad_input_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "sepkit", "prepare", str(tmp_path / "empty"), "--out",
         str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith(f"sepkit: error: {tmp_path / 'empty'}: no recordings found")
    assert "Traceback" not in result.stderr


def test_loose_audio_files_need_a_speaker_folder(tmp_path: Path) -> None:
    source = librispeech_folder(tmp_path / "src")
    shutil.copy(next(source.rglob("*.flac")), source / "stray.flac")
    with pytest.raises(DataError, match=r"stray.flac"):
        prepare_corpus(source, tmp_path / "out", SMALL)


def test_a_run_cut_short_or_new_settings_rebuild_the_corpus(tmp_path: Path) -> None:
    source = librispeech_folder(tmp_path / "src")
    out = tmp_path / "out"
    prepare_corpus(source, out, SMALL)
    # A run killed mid-way leaves corpus.json marked incomplete and some files missing.
    meta = json.loads((out / "corpus.json").read_text())
    (out / "corpus.json").write_text(json.dumps({**meta, "complete": False}))
    (out / "test.csv").unlink()
    again = prepare_corpus(source, out, SMALL)
    assert again["reused"] is False and len(_csv(out / "test.csv")) == 8
    # Other settings: the old mixtures go, the new ones come.
    fewer = PrepareSpec(valid_speakers=2, test_speakers=2, n_valid=3, n_test=4, mix_seconds=2.0)
    prepare_corpus(source, out, fewer)
    assert len(_csv(out / "test.csv")) == 4
    assert len(list((out / "test" / "mix").iterdir())) == 4
