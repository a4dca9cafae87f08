"""Results files, saved audio, and the HTML report from a synthetic run directory with the
documented files; the report is opened in headless Chromium when it is installed."""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from sepkit.cli.report import add_arguments as add_report_arguments
from sepkit.cli.report import run as run_report
from sepkit.evaluation.audio import safe_name, save_example_audio
from sepkit.evaluation.results import ResultsWriter, read_results
from sepkit.report import write_report

torch.set_num_threads(1)
SR = 8000


def make_run_dir(root: Path, with_optional_columns: bool = True) -> Path:
    """A run directory holding every file the report reads, with plausible content."""
    run = root / "run"
    run.mkdir()
    config = {
        "model": {"name": "convtasnet", "preset": "small"},
        "data": {"sample_rate": SR},
        "train": {"clip_grad_norm": 5.0},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    rng = np.random.default_rng(0)
    columns = ["step", "epoch", "loss", "kept", "filtered", "grad_norm", "clipped", "skipped"]
    columns += ["reason", "lr"] if with_optional_columns else []
    with (run / "metrics.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for step in range(1, 201):
            skipped = step in (50, 120)
            row = {
                "step": step,
                "epoch": step // 100,
                "loss": ""
                if skipped
                else f"{-2 - 10 * (1 - math.exp(-step / 60)) + rng.normal():.3f}",
                "kept": 4 - (step % 17 == 0),
                "filtered": int(step % 17 == 0),
                "grad_norm": f"{abs(rng.lognormal(1.0, 0.8)):.3f}",
                "clipped": "true" if step % 5 == 0 else "false",
                "skipped": int(skipped),
                "reason": "nonfinite_loss" if skipped else "",
                "lr": 1.5e-4 if step < 150 else 7.5e-5,
            }
            writer.writerow([row[c] for c in columns])
        handle.write("201,2,-9.0\n")  # a line cut short by a crash: skipped, not fatal
    with (run / "valid.csv").open("w", newline="") as handle:
        handle.write("epoch,step,valid_loss\n0,100,-8.5\n1,200,-10.25\n")
    writer_ = ResultsWriter(run, ["si_snr", "si_snr_i", "sdr", "sdr_i"])
    for i in range(30):
        base = rng.normal(10, 3)
        writer_.add(
            f"utt/{i:03d}",
            {"si_snr": base, "si_snr_i": base - 0.5, "sdr": base + 0.4, "sdr_i": base},
        )
    writer_.write()
    t = np.arange(SR * 2) / SR
    refs = torch.from_numpy(
        np.stack([np.sin(2 * np.pi * 220 * t) * (t % 0.5 < 0.3), rng.standard_normal(t.size) * 0.3])
    ).float()
    mix = refs.sum(0)
    for utt in ("utt/000", "utt/001"):
        save_example_audio(run / "audio", utt, mix, refs, refs * 1.7 + 0.01, SR)
    return run


def test_results_files(tmp_path: Path) -> None:
    writer = ResultsWriter(tmp_path, ["si_snr", "si_snr_i", "pesq"])
    for i in range(8):
        writer.add(
            f"u{i}",
            {"si_snr": float(i), "si_snr_i": float(i) - 1, "pesq": math.nan if i == 3 else 2.0},
        )
    with pytest.raises(ValueError, match="'u1': scored twice"):
        writer.add("u1", {})
    csv_path, json_path = writer.write()
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "id,si_snr,si_snr_i,pesq"
    assert lines[4] == "u3,3.0000,2.0000,nan"
    assert lines[-1] == "mean,3.5000,2.5000,2.0000"
    rows, columns = read_results(csv_path)
    assert len(rows) == 8 and columns == ["si_snr", "si_snr_i", "pesq"]
    summary = json.loads(json_path.read_text())
    assert summary["num_utterances"] == 8
    assert summary["metrics"]["si_snr_i"]["median"] == pytest.approx(2.5)
    assert summary["metrics"]["si_snr_i"]["std"] == pytest.approx(np.std(np.arange(8.0)))
    assert summary["metrics"]["pesq"]["num_nan"] == 1
    assert [w["id"] for w in summary["worst"]] == ["u0", "u1", "u2", "u3", "u4"]


def test_saved_audio(tmp_path: Path) -> None:
    refs = torch.randn(2, 4000) * 3
    folder = save_example_audio(tmp_path, "spk a/b:c", refs.sum(0), refs, refs.flip(0) * 0, SR)
    assert folder.name == safe_name("spk a/b:c") and "/" not in folder.name
    assert safe_name("spk a/b:c") != safe_name("spk_a_b_c")  # sanitised IDs do not collide
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["mix.wav", "s1.wav", "s1_est.wav", "s2.wav", "s2_est.wav"]
    data, rate = sf.read(folder / "s1.wav")
    assert rate == SR and 0.85 < np.abs(data).max() <= 0.91  # normalised below clipping
    assert np.abs(sf.read(folder / "s1_est.wav")[0]).max() == 0  # silence stays silence
    with pytest.raises(ValueError, match="'bad'"):
        save_example_audio(tmp_path, "bad", refs.sum(0), refs, refs[:1], SR)


def test_report_renders_from_a_run_dir(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path)
    page = write_report(run).read_text()
    pngs = sorted(p.name for p in (run / "plots").glob("*.png"))
    assert pngs == [
        "grad_norm.png",
        "guard.png",
        "loss.png",
        "lr.png",
        "si_snr_i_hist.png",
        f"spectrogram_{safe_name('utt/000')}.png",
    ]
    assert page.count('<img alt="') == 6 and page.count("data:image/png;base64,") == 6
    assert page.count("<audio ") == 10  # 2 examples x (mix, s1, s1_est, s2, s2_est)
    for src in re.findall(r'<audio [^>]*src="([^"]+)"', page):
        assert (run / src).is_file()
    worst = json.loads((run / "test_summary.json").read_text())["worst"][0]["id"]
    assert "clip_grad_norm: 5.0" in page and f"<code>{worst}</code>" in page
    embedded = write_report(run, embed_audio=True, max_examples=1).read_text()
    assert embedded.count("data:audio/wav;base64,") == 5


def test_report_tolerates_missing_columns_and_files(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path, with_optional_columns=False)
    (run / "valid.csv").unlink()
    write_report(run)
    assert not (run / "plots" / "lr.png").exists() and (run / "plots" / "loss.png").exists()
    bare = tmp_path / "bare"
    bare.mkdir()
    page = write_report(bare).read_text()
    assert "No test results yet" in page and "No saved examples" in page
    parser = argparse.ArgumentParser()
    add_report_arguments(parser)
    assert run_report(parser.parse_args(["--run-dir", str(tmp_path / "missing")])) == 1
    assert run_report(parser.parse_args(["--run-dir", str(bare)])) == 0


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.mark.skipif(
    _chromium() is None,
    reason="headless Chromium not installed (Debian: apt-get install chromium); cannot check the "
    "report in a browser",
)
def test_report_in_headless_chromium(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path)
    page = write_report(run)
    browser = _chromium()
    assert browser is not None
    common = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--allow-file-access-from-files",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
    ]
    url = page.resolve().as_uri()
    dom = subprocess.run(
        [*common, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    body = re.search(r"<body([^>]*)>", dom)
    assert body is not None, dom[:500]
    attrs = dict(re.findall(r'(data-[\w-]+)="([^"]*)"', body.group(1)))
    # The page's own load script counted the images that decoded and the audio that loaded.
    assert attrs.get("data-images-total") == "6" and attrs.get("data-images-ok") == "6", attrs
    assert attrs.get("data-audio-total") == "10", attrs
    assert attrs.get("data-audio-failed", "0") == "0", attrs
    assert attrs.get("data-audio-ok") == "10", attrs  # every WAV decoded its header
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*common, f"--screenshot={shot}", "--window-size=1000,2400", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    from matplotlib.image import imread

    pixels = imread(str(shot))[..., :3]
    assert pixels.shape[0] >= 2000 and pixels.shape[1] >= 900
    # Non-blank: a good share of pixels differ from white, and there are many distinct colours.
    assert (pixels.mean(-1) < 0.9).mean() > 0.05
    assert len(np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 200
