"""A tiny corpus in WHAMR!'s layout, from the real speech and noise that ship with sepkit.

WHAMR! publishes ``tr/cv/tt`` with ``mix_{both,clean,single}_{anechoic,reverb}/``,
``s{1,2}_{anechoic,reverb}/`` and ``noise/``. Here the rooms are hand-made impulse responses
(a delayed direct path followed by an exponentially decaying noise tail), so the layout test needs
no pyroomacoustics; the anechoic sources are the direct paths, aligned with the reverberant ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import fftconvolve

from helpers.noisy_corpus import RATE, _mixtures

FOLDERS = ("tr", "cv", "tt")


def toy_rir(rng: np.random.Generator, delay: int, rt60: float = 0.3) -> tuple[np.ndarray, int]:
    """A direct path of unit gain ``delay`` samples in, then a decaying tail: (rir, delay)."""
    n = int(rt60 * RATE)
    rir = np.zeros(delay + n, dtype=np.float64)
    rir[delay] = 1.0
    t = np.arange(n - 20) / RATE
    rir[delay + 20 :] = 0.3 * rng.standard_normal(n - 20) * 10 ** (-3 * t / rt60)
    return rir, delay


def whamr_corpus(root: Path, count: int = 3, seconds: float = 1.0) -> Path:
    """WHAMR!'s layout (``wav8k/min``) with ``count`` mixtures per split."""
    rng = np.random.default_rng(22)
    for k, folder in enumerate(FOLDERS):
        for i, tracks in enumerate(_mixtures("train", count, seconds, 20 + k)):
            name = f"{10 * k + i:03d}c0{i:03d}_1.{i:04d}_{10 * k + i + 100:03d}c0{i:03d}_-1.{i:04d}"
            length = len(tracks["s1"])
            out: dict[str, np.ndarray] = {"noise": tracks["noise"]}
            for s in ("s1", "s2"):
                rir, delay = toy_rir(rng, int(rng.integers(5, 40)))
                dry = tracks[s].astype(np.float64)
                out[f"{s}_anechoic"] = np.pad(dry, (delay, 0))[:length]
                out[f"{s}_reverb"] = fftconvolve(dry, rir)[:length]
            for kind in ("anechoic", "reverb"):
                s1, s2 = out[f"s1_{kind}"], out[f"s2_{kind}"]
                out[f"mix_single_{kind}"] = s1 + tracks["noise"]
                out[f"mix_clean_{kind}"] = s1 + s2
                out[f"mix_both_{kind}"] = s1 + s2 + tracks["noise"]
            for sub, x in out.items():
                (root / folder / sub).mkdir(parents=True, exist_ok=True)
                sf.write(str(root / folder / sub / f"{name}.wav"), x.astype(np.float32), RATE,
                         subtype="FLOAT")  # fmt: skip
    return root
