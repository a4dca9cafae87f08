"""Formant-scaled training voices: generated eSpeak NG variants, on real synthesis."""

from __future__ import annotations

import csv
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sepkit.data.synthetic import synth
from sepkit.data.synthetic.generate import CorpusSpec, generate_corpus

SMALL = dict(n_train=6, n_valid=2, n_test=2, utterance_seconds=(2.0, 2.5), seed=3)
TEXT = "The quick brown fox jumps over the lazy dog, and then it rests for a while."


def test_scaled_variant_scales_every_formant_and_keeps_the_rest() -> None:
    original = (
        "name male3\ngender male\npitch 80 122\nformant 1  96  97 100\nformant 3 96 103 100\n"
    )
    text = synth.scaled_variant(original, 1.1)
    lines = text.splitlines()
    assert lines[:3] == ["name male3", "gender male", "pitch 80 122"]
    formants = {int(p[1]): p[2:] for p in (line.split() for line in lines) if p[0] == "formant"}
    assert sorted(formants) == list(range(9))  # unmentioned formants written out, so they move
    assert formants[1] == ["106", "97", "100"]  # frequency scaled; height and width kept
    assert formants[3] == ["106", "103", "100"]
    assert formants[0] == formants[8] == ["110", "100", "100"]


def test_edited_variant_moves_each_formant_and_the_pitch() -> None:
    original = "name male3\npitch 80 122\nformant 1  96  97 100\nformant 3 96 103 100 -30\n"
    factors = tuple(1.0 + n / 100 for n in range(9))
    heights = tuple(1.0 - n / 100 for n in range(9))
    voice = synth.Voice("en-us", "m3", formant_scale=1.1, formant_factors=factors,
                        height_factors=heights, pitch_hz=(190, 260))  # fmt: skip
    lines = synth.edited_variant(original, voice).splitlines()
    assert "pitch 80 122" not in lines and lines[-1] == "pitch 190 260"
    formants = {int(p[1]): p[2:] for p in (line.split() for line in lines) if p[0] == "formant"}
    assert formants[1] == [str(round(96 * 1.1 * 1.01)), str(round(97 * 0.99)), "100"]
    assert formants[3] == [str(round(96 * 1.1 * 1.03)), str(round(103 * 0.97)), "100", "-30"]
    assert formants[8] == [str(round(100 * 1.1 * 1.08)), str(round(100 * 0.92)), "100"]
    # each set of edits is its own generated file; a scale alone keeps its earlier file name
    assert voice.variant_name != synth.Voice("en-us", "m3", formant_scale=1.1).variant_name
    plain_key = "v" + hashlib.sha1(b"m3|1.1").hexdigest()[:8]
    assert synth.Voice("en-us", "m3", formant_scale=1.1).variant_name == plain_key


_F0 = """
import sys
import numpy as np
from sepkit.data.synthetic import synth
def f0(x):
    x, rate, found = x.astype(np.float64), synth.NATIVE_RATE, []
    for i in range(0, len(x) - 1024, 512):
        seg = x[i : i + 1024]
        if np.sqrt(np.mean(seg**2)) > 300:
            ac = np.correlate(seg, seg, "full")[1023:]
            lo, hi = rate // 400, rate // 60
            found.append(rate / (lo + np.argmax(ac[lo:hi])))
    return np.median(found)
for edits in ({}, {"formant_scale": 1.17, "pitch_hz": (180, 250)}):
    print(f0(synth.synthesize(sys.argv[1], synth.Voice("en-us", "m3", **edits))))
"""


def test_cross_gender_edit_moves_the_voice_pitch() -> None:
    out = subprocess.run([sys.executable, "-c", _F0, TEXT], check=True, capture_output=True,
                         text=True, timeout=120).stdout  # fmt: skip
    plain, edited = (float(v) for v in out.split())
    assert 80 < plain < 140 and 170 < edited < 270, (plain, edited)  # male voice -> female range


def test_timbre_edits_only_for_training_speakers() -> None:
    from sepkit.data.synthetic.speakers import make_speakers

    for split in ("valid", "test"):
        assert make_speakers(split, 0, 2, formant_shift=0.3, timbre_jitter=0.1,
                             cross_gender=0.5) == make_speakers(split, 0, 2)  # fmt: skip
    plain = make_speakers("train", 0, 4, formant_shift=0.15)
    edited = make_speakers("train", 0, 4, formant_shift=0.15, timbre_jitter=0.1, cross_gender=0.4)
    same = ("id", "accent", "pitch", "pitch_range", "rate", "emphasis")
    assert [[getattr(s, k) for k in same] for s in plain] == [
        [getattr(s, k) for k in same] for s in edited
    ]
    crossed = [(p, e) for p, e in zip(plain, edited, strict=True) if p.gender != e.gender]
    assert 0.25 < len(crossed) / len(edited) < 0.55
    for _, e in crossed:  # formants and base pitch moved towards the new gender
        assert e.pitch_hz is not None
        if e.gender == "f":
            assert e.formant_scale > 1.0 and e.pitch_hz[0] >= 130
        else:
            assert e.formant_scale < 1.0 and e.pitch_hz[1] <= 160
    kept = [e for p, e in zip(plain, edited, strict=True) if p.gender == e.gender]
    assert kept and all(e.pitch_hz is None for e in kept)
    for e in edited:
        assert len(e.formant_factors) == len(e.height_factors) == 9
        assert all(1 / 1.1 - 1e-3 <= f <= 1.1 + 1e-3 for f in e.formant_factors)
        assert all(1 / 1.21 - 1e-3 <= h <= 1.21 + 1e-3 for h in e.height_factors)


_CENTROIDS = """
import sys
import numpy as np
from sepkit.data.synthetic import synth
for scale in (0.85, 1.0, 1.15):
    x = synth.synthesize(sys.argv[2], synth.Voice("en-us", sys.argv[1], formant_scale=scale))
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64)))
    freqs = np.fft.rfftfreq(len(x), 1 / synth.NATIVE_RATE)
    print((spectrum * freqs).sum() / spectrum.sum())
"""


@pytest.mark.parametrize("variant", ["m3", "f4"])
def test_formant_scale_moves_the_spectrum(variant: str) -> None:
    # In a child process: eSpeak keeps state from one utterance to the next, and the corpus
    # generator's byte-identity relies on this process not having spoken (generate.py).
    out = subprocess.run([sys.executable, "-c", _CENTROIDS, variant, TEXT], check=True,
                         capture_output=True, text=True, timeout=120).stdout  # fmt: skip
    centroids = [float(v) for v in out.split()]  # spectral centroid (Hz): moves with formants
    assert centroids[0] < 0.97 * centroids[1] and centroids[2] > 1.03 * centroids[1], centroids


def test_unknown_variant_is_an_error_not_the_default_voice() -> None:
    # eSpeak itself would speak with its default voice; sepkit refuses instead.
    with pytest.raises(synth.SynthError, match="no voice variant 'nosuchvoice'"):
        synth.synthesize(TEXT, synth.Voice("en-us", "nosuchvoice", formant_scale=1.1))


def test_formant_shift_changes_only_training_speakers(tmp_path: Path) -> None:
    plain = CorpusSpec(**SMALL)  # type: ignore[arg-type]
    shifted = CorpusSpec(**SMALL, formant_shift=0.15, train_speakers_per_variant=3)  # type: ignore[arg-type]
    generate_corpus(tmp_path / "plain", plain, progress=False, workers=1)
    generate_corpus(tmp_path / "shifted", shifted, progress=False, workers=2)

    def digests(root: Path, split: str) -> dict[str, str]:
        files = [*sorted((root / split).rglob("*.wav")), root / f"{split}.csv"]
        return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest() for p in files}

    for split in ("valid", "test"):  # held-out splits do not depend on the training voices
        assert digests(tmp_path / "plain", split) == digests(tmp_path / "shifted", split)
    assert digests(tmp_path / "plain", "train") != digests(tmp_path / "shifted", "train")

    with (tmp_path / "shifted" / "speakers.csv").open(newline="") as handle:
        speakers = list(csv.DictReader(handle))
    scales = {s["split"]: [float(x["formant_scale"]) for x in speakers if x["split"] == s["split"]]
              for s in speakers}  # fmt: skip
    assert all(v == 1.0 for v in scales["valid"] + scales["test"])
    assert all(1 / 1.15 - 1e-3 <= v <= 1.15 + 1e-3 for v in scales["train"])
    assert len(set(scales["train"])) > len(scales["train"]) // 2  # each speaker its own timbre
    with (tmp_path / "plain" / "speakers.csv").open(newline="") as handle:
        plain_train = [x for x in csv.DictReader(handle) if x["split"] == "train"]
    assert len(scales["train"]) > len(plain_train)  # 3 speakers per variant instead of 2


_SPEAK = """
import sys
import numpy as np
from sepkit.data.synthetic import synth
for i in range(int(sys.argv[2])):  # generated variants written before the voice list is built
    synth._ensure_variant(synth.backend().data, synth.Voice("en-us", "m3", formant_scale=1.2 + i / 1000))
np.save(sys.argv[1], synth.synthesize("Hello there, how are you?", synth.Voice("en-gb-scotland", "m3")))
"""


def test_many_generated_variants_leave_the_published_voices_alone(tmp_path: Path) -> None:
    """eSpeak lists at most 349 voices; generated variants must not push accents out of it."""

    def speak(cache: Path, n_variants: int) -> np.ndarray:
        out = tmp_path / f"{cache.name}.npy"
        env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
        subprocess.run([sys.executable, "-c", _SPEAK, str(out), str(n_variants)], env=env,
                       check=True, timeout=120)  # fmt: skip
        return np.load(out)

    reference = speak(tmp_path / "fresh", 0)
    crowded = speak(tmp_path / "crowded", 400)
    assert np.array_equal(reference, crowded)
    generated = list((tmp_path / "crowded").rglob(f"{synth.GENERATED}/v*"))
    assert len(generated) == 400
