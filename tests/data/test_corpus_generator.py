"""The built-in corpus generator, on real eSpeak NG speech written to temp folders."""

from __future__ import annotations

import argparse
import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sepkit.cli.prepare_demo import add_arguments as add_prepare_demo_arguments
from sepkit.cli.prepare_demo import run as run_prepare_demo
from sepkit.data import audio
from sepkit.data.synthetic.generate import generate_corpus
from sepkit.data.synthetic.plan import CorpusSpec, draw_distinct_voices, gender_balanced_weights
from sepkit.data.synthetic.speakers import FAMILIES, family_splits, make_speakers, synthesiser

SMALL = dict(n_train=6, n_valid=2, n_test=2, utterance_seconds=(2.0, 2.5), seed=3)


def _rows(root: Path, split: str) -> list[dict[str, str]]:
    with (root / f"{split}.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _digests(root: Path) -> dict[str, str]:
    files = sorted(p for p in root.rglob("*") if p.suffix in (".wav", ".csv"))
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest() for p in files}


def test_same_seed_gives_byte_identical_files_whatever_the_workers(tmp_path: Path) -> None:
    spec = CorpusSpec(**SMALL)  # type: ignore[arg-type]
    a = generate_corpus(tmp_path / "a", spec, progress=False, workers=2)
    b = generate_corpus(tmp_path / "b", spec, progress=False, workers=1)
    assert a["utterances_synthesized"] > 0 and b["utterances_synthesized"] > 0  # no shared cache
    da, db = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert len(da) == 3 * 10 + 4  # mix, s1, s2 per mixture + 3 manifests + speakers.csv
    assert da == db
    other = generate_corpus(tmp_path / "c", CorpusSpec(**{**SMALL, "seed": 4}), progress=False)  # type: ignore[arg-type]
    assert other["splits"]["train"]["mixtures"] == 6
    assert _digests(tmp_path / "c") != da


def test_complete_corpus_is_reused_and_a_new_spec_rewrites_it(tmp_path: Path) -> None:
    spec = CorpusSpec(**SMALL)  # type: ignore[arg-type]
    generate_corpus(tmp_path, spec, progress=False, workers=1)
    mix = tmp_path / "train" / "mix" / "train-000000.wav"
    before = mix.stat().st_mtime_ns
    again = generate_corpus(tmp_path, spec, progress=False, workers=1)
    assert again["reused"] and mix.stat().st_mtime_ns == before
    smaller = CorpusSpec(**{**SMALL, "n_train": 3})  # type: ignore[arg-type]
    summary = generate_corpus(tmp_path, smaller, progress=False, workers=1)
    assert not summary["reused"] and summary["utterances_synthesized"] == 0  # cache reused
    assert len(list((tmp_path / "train" / "mix").glob("*.wav"))) == 3


def test_splits_use_disjoint_voice_families(demo_corpus: Path) -> None:
    assignment = family_splits()
    for split in ("train", "valid", "test"):
        genders = {FAMILIES[f][0] for f, s in assignment.items() if s == split}
        assert genders == {"m", "f"}, f"{split} lacks a gender"
        synths = {synthesiser(f) for f, s in assignment.items() if s == split}
        assert synths <= {synthesiser(f) for f, s in assignment.items() if s == "train"}
    with (demo_corpus / "speakers.csv").open(newline="") as f:
        speakers = list(csv.DictReader(f))
    fams = {
        s: {r["family"] for r in speakers if r["split"] == s} for s in ("train", "valid", "test")
    }
    variants = {s: {r["variant"] for r in speakers if r["split"] == s} for s in fams}
    assert not fams["train"] & fams["test"] and not fams["train"] & fams["valid"]
    assert not variants["train"] & variants["test"]
    split_of = {r["id"]: r["split"] for r in speakers}
    family_of = {r["id"]: r["family"] for r in speakers}
    for split in fams:
        for row in _rows(demo_corpus, split):
            spk = [row["speaker_1"], row["speaker_2"]]
            assert all(split_of[s] == split for s in spk)
            # two different voices: never two speakers made from one variant family
            assert family_of[spk[0]] != family_of[spk[1]], row["id"]
            assert [row["family_1"], row["family_2"]] == [family_of[s] for s in spk]


def test_mixture_voices_drawn_from_distinct_families() -> None:
    speakers = make_speakers("test", seed=0)
    weights = gender_balanced_weights(speakers)
    rng = np.random.default_rng(5)
    picks = [draw_distinct_voices(rng, speakers, weights, 3) for _ in range(300)]
    assert all(len({speakers[i].family for i in p}) == 3 for p in picks)
    # every speaker can still be drawn, and female voices still make up about half the draws
    assert {i for p in picks for i in p} == set(range(len(speakers)))
    female = np.mean([speakers[i].gender == "f" for p in picks for i in p])
    assert 0.35 < female < 0.6
    few = [s for s in speakers if s.family in sorted({s.family for s in speakers})[:2]]
    with pytest.raises(ValueError, match="2 voice families in the split, too few for 3"):
        draw_distinct_voices(rng, few, gender_balanced_weights(few), 3)


def test_gains_within_range_and_mixture_is_exact_sum(demo_corpus: Path) -> None:
    errors = []
    for row in _rows(demo_corpus, "train"):
        g1, g2 = float(row["gain_db_1"]), float(row["gain_db_2"])
        assert -5.0 <= g2 - g1 <= 5.0
        mix, rate = sf.read(demo_corpus / row["mix_path"], dtype="int16")
        s1, _ = sf.read(demo_corpus / row["s1_path"], dtype="int16")
        s2, _ = sf.read(demo_corpus / row["s2_path"], dtype="int16")
        assert rate == 8000 and mix.ndim == 1 and len(mix) == int(row["length"])
        np.testing.assert_array_equal(mix.astype(np.int32), s1.astype(np.int32) + s2)
        assert np.abs(mix).max() <= 0.91 * 32767
        f1, f2 = s1 / 32768.0, s2 / 32768.0
        measured = 20 * np.log10(audio.active_rms(f2, rate) / audio.active_rms(f1, rate))
        errors.append(abs(measured - (g2 - g1)))
    # Levels measured on the written (truncated) sources follow the recorded gains.
    assert np.median(errors) < 1.0 and max(errors) < 3.0


@pytest.mark.parametrize("num_speakers", [3, 4])
def test_more_speakers(tmp_path: Path, num_speakers: int) -> None:
    spec = CorpusSpec(num_speakers=num_speakers, n_train=3, n_valid=1, n_test=1, seed=1,
                      utterance_seconds=(2.0, 2.5))  # fmt: skip
    generate_corpus(tmp_path, spec, progress=False, workers=2)
    for row in _rows(tmp_path, "train"):
        srcs = [
            sf.read(tmp_path / row[f"s{k + 1}_path"], dtype="int16")[0] for k in range(num_speakers)
        ]
        mix = sf.read(tmp_path / row["mix_path"], dtype="int16")[0]
        np.testing.assert_array_equal(mix, np.sum(srcs, axis=0, dtype=np.int32))
        assert len({row[f"speaker_{k + 1}"] for k in range(num_speakers)}) == num_speakers
        gains = [float(row[f"gain_db_{k + 1}"]) for k in range(num_speakers)]
        assert all(-5.0 <= g - gains[0] <= 5.0 for g in gains)
    assert not (tmp_path / "train" / f"s{num_speakers + 1}").exists()


def test_max_mode_with_noise_at_16k(tmp_path: Path) -> None:
    spec = CorpusSpec(n_train=4, n_valid=1, n_test=1, sample_rate=16000, mode="max", noise=True,
                      overlap=(0.2, 0.4), utterance_seconds=(2.0, 2.5), seed=2)  # fmt: skip
    summary = generate_corpus(tmp_path, spec, progress=False, workers=1)
    rows = _rows(tmp_path, "train")
    for row in rows:
        mix, rate = sf.read(tmp_path / row["mix_path"], dtype="int16")
        parts = [sf.read(tmp_path / row[k], dtype="int16")[0] for k in ("s1_path", "s2_path")]
        noise = sf.read(tmp_path / row["noise_path"], dtype="int16")[0]
        assert rate == 16000
        np.testing.assert_array_equal(mix, np.sum([*parts, noise], axis=0, dtype=np.int32))
        assert -6.0 <= float(row["noise_snr_db"]) <= 3.0
        # "max": the mixture spans both utterances, one of which starts at 0.
        assert min(float(row["onset_s_1"]), float(row["onset_s_2"])) == 0.0
        assert float(row["duration"]) > 2.0
    # a low target overlap gives mostly non-overlapped speech, reported per mixture
    assert summary["splits"]["train"]["mean_overlap_ratio"] < 0.6
    assert all(0.0 <= float(r["overlap_ratio"]) <= 1.0 for r in rows)


def test_speech_has_pauses_and_varied_durations(demo_corpus: Path) -> None:
    rows = _rows(demo_corpus, "train")
    active = []
    for row in rows:
        s1, rate = sf.read(demo_corpus / row["s1_path"])
        active.append(audio.activity(s1, rate).mean())
    assert 0.4 < float(np.mean(active)) < 0.9  # not wall-to-wall speech
    durations = [float(r["duration"]) for r in rows]
    assert max(durations) - min(durations) > 0.3
    assert len({r["text_1"] for r in rows}) > len(rows) // 2


def test_resampling_is_exact_polyphase() -> None:
    x = np.random.default_rng(0).standard_normal(22050).astype(np.float32)
    y = audio.resample_exact(x, 22050, 8000)
    assert len(y) == 8000 and y.dtype == np.float32


def test_cli_functions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_prepare_demo_arguments(parser)
    args = parser.parse_args(
        ["--out", str(tmp_path), "--n-train", "2", "--n-valid", "1", "--n-test", "1",
         "--num-speakers", "2", "--seed", "5", "--workers", "1", "--no-progress"]
    )  # fmt: skip
    assert run_prepare_demo(args) == 0
    assert (tmp_path / "train.csv").exists() and (tmp_path / "corpus.json").exists()
    assert "mixtures" in capsys.readouterr().out
    bad = parser.parse_args(["--out", str(tmp_path), "--num-speakers", "9"])
    assert run_prepare_demo(bad) == 2
    assert "num_speakers" in capsys.readouterr().err
    too_far = parser.parse_args(["--out", str(tmp_path), "--formant-shift", "0.6"])
    assert run_prepare_demo(too_far) == 2
    assert "formant_shift=0.6" in capsys.readouterr().err
