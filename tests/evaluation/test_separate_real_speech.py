"""`sepkit separate` on real recordings as users have them: any sample rate, level or polarity.

The input is a mixture of two real LibriSpeech speakers shipped in the package, written the ways
real files come: 44.1 kHz 16-bit, 16 kHz FLAC at -45 dBFS, sign-inverted float WAV. The model is
the demo recipe's Conv-TasNet (fixed seed; what is tested is the file handling and the model's
response to level and rate, which training does not change).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from sepkit.demo import REAL_SPEECH, RECIPES
from sepkit.inference import separate_file
from sepkit.losses import si_snr
from sepkit.recipe import load_recipe
from sepkit.run import build_model_for_run

RATE = 8000


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model_for_run(load_recipe(RECIPES["real"], [])).eval()


def real_mixture(seconds: float = 5.0) -> np.ndarray:
    female, male = (
        sorted(REAL_SPEECH.glob("103/*/*.flac"))[0],
        sorted(REAL_SPEECH.glob("1040/*/*.flac"))[0],
    )
    a, _ = sf.read(str(female), dtype="float32")
    b, _ = sf.read(str(male), dtype="float32")
    n = int(seconds * RATE)
    mix = a[RATE : RATE + n] + b[RATE : RATE + n]
    return (mix / np.abs(mix).max() * 0.5).astype(np.float32)


def _separate(model: torch.nn.Module, path: Path, out: Path) -> np.ndarray:
    files = separate_file(model, path, out, RATE, chunk_seconds=2.0, overlap_seconds=0.5)
    est = [sf.read(str(f), dtype="float64") for f in files]
    assert [r for _, r in est] == [sf.info(str(path)).samplerate] * 2
    assert all(len(x) == sf.info(str(path)).frames for x, _ in est)
    return np.stack([x for x, _ in est])


def _at_8k(x: np.ndarray, rate: int) -> torch.Tensor:
    return torch.from_numpy(soxr.resample(x.T, rate, RATE).T.copy())


def test_any_rate_level_and_polarity(model: torch.nn.Module, tmp_path: Path) -> None:
    mix = real_mixture()
    sf.write(str(tmp_path / "ref.wav"), mix, RATE, subtype="FLOAT")
    ref = _separate(model, tmp_path / "ref.wav", tmp_path / "ref")
    assert np.isfinite(ref).all() and np.abs(ref).max() > 1e-3

    # 44.1 kHz, 16-bit: the model runs at 8 kHz and the output comes back at 44.1 kHz. Brought
    # back to 8 kHz, it is what the model makes of the same input given at 8 kHz.
    wide = soxr.resample(mix, RATE, 44100)
    sf.write(str(tmp_path / "cd.wav"), wide, 44100, subtype="PCM_16")
    cd = _separate(model, tmp_path / "cd.wav", tmp_path / "cd")
    wide, _ = sf.read(str(tmp_path / "cd.wav"), dtype="float32")
    sf.write(str(tmp_path / "cd8k.wav"), soxr.resample(wide, 44100, RATE), RATE, subtype="FLOAT")
    cd_ref = _separate(model, tmp_path / "cd8k.wav", tmp_path / "cd8k")
    # (the same trip through 44.1 kHz: an untrained model's estimates reach up to 4 kHz, where
    # the resampler's anti-aliasing filter already cuts)
    cd_ref_trip = _at_8k(soxr.resample(cd_ref.T, RATE, 44100).T, 44100)
    agreement = si_snr(_at_8k(cd, 44100)[:, 800:-800], cd_ref_trip[:, 800:-800])
    assert agreement.min().item() > 20.0, f"44.1 kHz output differs: {agreement.tolist()} dB"

    # At -45 dBFS: the estimates scale with the input, so the level does not matter.
    scale = 10 ** (-45 / 20) / 0.5
    sf.write(str(tmp_path / "quiet.wav"), mix * scale, RATE, subtype="FLOAT")
    low = _separate(model, tmp_path / "quiet.wav", tmp_path / "quiet") / scale
    np.testing.assert_allclose(low, ref, atol=1e-3 * np.abs(ref).max())

    # Sign-inverted: a valid separation comes back (how well a trained model copes with either
    # polarity is measured in docs/demo.md; the demo trains with random polarity for it).
    sf.write(str(tmp_path / "inverted.wav"), -mix, RATE, subtype="FLOAT")
    inverted = _separate(model, tmp_path / "inverted.wav", tmp_path / "inverted")
    assert np.isfinite(inverted).all() and np.abs(inverted).max() > 1e-3
