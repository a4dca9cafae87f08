"""Speech enhancement as a user runs it: ``sepkit prepare --num-spks 1 --noise shipped``, then
``sepkit train recipes/enhance-noisy.yaml`` (one source, the same trainer and PIT objective) and
``sepkit separate`` on its run. Real speech and real noise, both shipped with sepkit."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
from helpers.training import TINY_MODEL

from sepkit.demo import REAL_SPEECH

RECIPE = Path(__file__).parents[2] / "sepkit" / "recipes" / "enhance-noisy.yaml"


def sepkit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sepkit", *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.timeout(400)
def test_enhancer_trains_tests_and_enhances(tmp_path: Path) -> None:
    corpus, run, out = tmp_path / "corpus", tmp_path / "run", tmp_path / "enhanced"
    made = sepkit(
        "prepare", str(REAL_SPEECH), "--out", str(corpus), "--num-spks", "1",
        "--valid-speakers", "2", "--test-speakers", "2", "--n-valid", "2", "--n-test", "3",
        "--mix-seconds", "1.5", "--noise", "shipped", "--noise-snr-db", "-5", "10",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr[-2000:]
    assert "noise: shipped at -5 to 10 dB SNR in valid/test" in made.stdout
    with (corpus / "test.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert "s2_path" not in rows[0] and all(-5 <= float(r["noise_snr_db"]) <= 10 for r in rows)

    trained = sepkit(
        "train", str(RECIPE), "--run-dir", str(run), f"data.root={corpus}",
        "data.batch_size=2", "data.mixtures_per_epoch=6", "data.training_signal_len=4000",
        "train.epochs=1", "train.max_minutes=null", "train.checkpoint_every_minutes=null",
        "train.progress_bar=false", "train.test_shifts=1", "train.n_audio_to_save=1",
        *TINY_MODEL, "model.num_spks=1",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    summary = json.loads((run / "test_summary.json").read_text())
    assert summary["num_utterances"] == 3
    # the improvement over the noisy input, as for separation
    assert {"si_snr", "si_snr_i", "sdr", "sdr_i"} <= set(summary["metrics"])
    assert summary["metrics"]["si_snr_i"]["num_nan"] == 0

    noisy = corpus / rows[0]["mix_path"]
    enhanced = sepkit("separate", str(noisy), "--run-dir", str(run), "--out", str(out))
    assert enhanced.returncode == 0, enhanced.stderr[-2000:]
    files = sorted(out.rglob("*.wav"))
    assert len(files) == 1, files
    est, rate = sf.read(str(files[0]))
    assert rate == 8000 and len(est) == sf.info(str(noisy)).frames
