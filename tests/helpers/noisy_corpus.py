"""Tiny noisy corpora built from the real audio that ships with sepkit, in published layouts.

WHAM! (``tr/cv/tt`` with ``mix_both/ mix_clean/ s1/ s2/ noise/``, wsj0-style names) and
Libri2Mix (``metadata/mixture_<split>_mix_both.csv``): the LibriSpeech speakers of
``sepkit/corpora/librispeech-mini`` as the speech, the Speech Commands recordings of
``sepkit/corpora/noise`` as the noise, at WHAM!'s SNRs. Enough for a recipe to run two steps.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf

from sepkit.data.audio import resample_exact
from sepkit.data.noise import SHIPPED, segment_bounds
from sepkit.data.prepare import PrepareSpec, prepare_corpus
from sepkit.demo import REAL_SPEECH

RATE = 8000
#: Held-out speakers of prepared corpora: few, so that the test splits are quick to write.
SMALL_NOISY = PrepareSpec(
    valid_speakers=2, test_speakers=2, n_valid=3, n_test=3, mix_seconds=1.5, noise="shipped"
)


def prepared(out: Path, num_spks: int = 2, **kw: object) -> Path:
    """``sepkit prepare`` of the shipped speech with held-out shipped noise in valid/test."""
    spec = PrepareSpec(**{**SMALL_NOISY.__dict__, "num_spks": num_spks, **kw})  # type: ignore[arg-type]
    prepare_corpus(REAL_SPEECH, out, spec)
    return out


def _speech(count: int, seconds: float) -> list[np.ndarray]:
    files = sorted(REAL_SPEECH.rglob("*.flac"))[:count]
    out = []
    for f in files:
        x, rate = sf.read(str(f), dtype="float32")
        assert rate == RATE
        out.append(x[RATE // 2 : RATE // 2 + int(seconds * RATE)])
    return out


def _noise(split: str, length: int, rng: np.random.Generator) -> np.ndarray:
    path = sorted(SHIPPED.glob("*.flac"))[int(rng.integers(4))]
    x, rate = sf.read(str(path), dtype="float32")
    lo, hi = segment_bounds(len(x), split)
    x = resample_exact(x[lo:hi], rate, RATE)
    start = int(rng.integers(0, len(x) - length))
    return x[start : start + length]


def _mixtures(split: str, count: int, seconds: float, seed: int) -> list[dict[str, np.ndarray]]:
    """``count`` noisy 2-speaker mixtures (s1, s2, noise, mix_clean, mix_both)."""
    rng = np.random.default_rng(seed)
    speech = _speech(2 * count, seconds)
    out = []
    for i in range(count):
        s1, s2 = speech[2 * i], speech[2 * i + 1] * 10 ** (rng.uniform(-2.5, 2.5) / 20)
        s1, s2 = s1 / np.abs(s1).max() * 0.3, s2 / np.abs(s2).max() * 0.3
        noise = _noise(split, len(s1), rng)
        loud = max(np.mean(s1**2), np.mean(s2**2))
        noise = noise * np.sqrt(loud / np.mean(noise**2) / 10 ** (rng.uniform(-6, 3) / 10))
        tracks = {"s1": s1, "s2": s2, "noise": noise.astype(np.float32)}
        tracks["mix_clean"] = s1 + s2
        tracks["mix_both"] = s1 + s2 + tracks["noise"]
        out.append(tracks)
    return out


def wham_corpus(root: Path, count: int = 4, seconds: float = 1.5) -> Path:
    """WHAM!'s layout (``wav8k/min``) with ``count`` mixtures per split."""
    for k, folder in enumerate(("tr", "cv", "tt")):
        for i, tracks in enumerate(_mixtures("train", count, seconds, k)):
            name = f"{10 * k + i:03d}c0{i:03d}_1.{i:04d}_{10 * k + i + 100:03d}c0{i:03d}_-1.{i:04d}"
            for sub, x in tracks.items():
                (root / folder / sub).mkdir(parents=True, exist_ok=True)
                sf.write(str(root / folder / sub / f"{name}.wav"), x, RATE, subtype="FLOAT")
    return root


def libri2mix_corpus(root: Path, count: int = 4, seconds: float = 1.5) -> Path:
    """Libri2Mix's layout: ``<split>/{mix_both,s1,s2,noise}/`` and its metadata CSVs."""
    meta = root / "metadata"
    meta.mkdir(parents=True)
    for k, split in enumerate(("train-360", "dev", "test")):
        with (meta / f"mixture_{split}_mix_both.csv").open("w", newline="") as handle:
            w = csv.writer(handle)
            w.writerow(
                ["mixture_ID", "mixture_path", "source_1_path", "source_2_path", "noise_path",
                 "length"]
            )  # fmt: skip
            for i, tracks in enumerate(_mixtures("train", count, seconds, 10 + k)):
                mid = f"{19 + 10 * k + i}-198-000{i}_{1088 + 10 * k + i}-134315-000{i}"
                paths = []
                for sub in ("mix_both", "s1", "s2", "noise"):
                    target = root / split / sub / f"{mid}.wav"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    sf.write(str(target), tracks[sub], RATE, subtype="FLOAT")
                    paths.append(f"{split}/{sub}/{mid}.wav")
                w.writerow([mid, *paths, len(tracks["s1"])])
    return root
