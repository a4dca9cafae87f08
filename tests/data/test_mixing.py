"""On-the-fly mixing of real recordings: crops that hold speech, levels, polarity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from sepkit.data.audio import active_rms
from sepkit.data.corpus import Record
from sepkit.data.dynamic_mixing import LEVEL, DynamicMixer, active_crop, mix_at_levels
from sepkit.demo import REAL_SPEECH

RATE = 8000


def _speech() -> np.ndarray:
    path = next(REAL_SPEECH.rglob("*.flac"))
    x, _ = sf.read(str(path), dtype="float32")
    return x


def test_crops_avoid_a_long_pause() -> None:
    """3 s of speech, then 9 s of near silence: a random 1 s crop lands in the pause 3 times in
    4; the speech-seeking crop almost never does."""
    speech = _speech()[: 3 * RATE]
    x = np.concatenate([speech, 1e-4 * np.random.default_rng(0).standard_normal(9 * RATE)])
    x = x.astype(np.float32)
    level = active_rms(x, RATE)
    rng = np.random.default_rng(1)
    in_pause = 0
    for _ in range(200):
        crop = active_crop(rng, len(x), RATE, lambda a, b: x[a:b], level, RATE)
        assert len(crop) == RATE
        in_pause += float(np.sqrt(np.mean(crop**2))) < 0.01 * level
    assert in_pause / 200 < 0.4  # 0.75 ** 4 = 0.32 of crops can find no speech in 4 tries


def test_levels_follow_the_wsj0_2mix_convention() -> None:
    x = _speech()
    rng = np.random.default_rng(0)
    gaps = []
    for _ in range(200):
        a, b = x[: 2 * RATE], x[2 * RATE : 4 * RATE] * 0.01  # very different input levels
        sources = mix_at_levels(rng, [a, b], RATE, 5.0, 2 * RATE)
        la, lb = (20 * np.log10(active_rms(s, RATE)) for s in sources)
        assert abs((la + lb) / 2 - 20 * np.log10(LEVEL)) < 0.01  # their mean level is fixed
        gaps.append(la - lb)
    gaps_arr = np.array(gaps)
    assert gaps_arr.min() >= -5.01 and gaps_arr.max() <= 5.01
    assert 0.4 < (gaps_arr > 0).mean() < 0.6  # either speaker the louder
    assert 2.0 < np.abs(gaps_arr).mean() < 3.0  # 0-5 dB apart, uniformly: 2.5 dB on average


def test_random_polarity_flips_sources_independently(tmp_path: Path) -> None:
    x = _speech()
    paths = []
    for k in range(3):
        paths.append(tmp_path / f"{k}.wav")
        sf.write(str(paths[-1]), x[k * 3 * RATE :][: 3 * RATE], RATE, subtype="FLOAT")
    records = [Record(p.stem, p, (p,), None, (p.stem,)) for p in paths]
    frames = {p: 3 * RATE for p in paths}
    signs = []
    for flip in (False, True):
        mixer = DynamicMixer(records, frames, 2, RATE, random_polarity=flip)
        rng = np.random.default_rng(3)
        for _ in range(40):
            sources, speakers = mixer.make(rng, 3 * RATE)  # whole files: crops start at 0
            for s, spk in zip(sources, speakers, strict=True):
                original = x[int(spk) * 3 * RATE :][: 3 * RATE]
                off = int(np.argmax(np.abs(s) > 0))
                signs.append((flip, float(np.sign(np.dot(s[off:], original[: len(s) - off])))))
    plain = [s for f, s in signs if not f]
    flipped = [s for f, s in signs if f]
    assert set(plain) == {1.0}
    assert 0.3 < np.mean(np.array(flipped) < 0) < 0.7
