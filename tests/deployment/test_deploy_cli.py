"""``sepkit stream`` and ``sepkit export`` as a user runs them: on a run trained by
``sepkit train`` from the causal recipe, and every bad input the issue names, each one clear
error (exit status 2, the culprit named) with nothing written or overwritten."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers.training import train_overrides

from sepkit.demo import REAL_SPEECH
from sepkit.inference import Separator
from sepkit.models.io import save_model
from sepkit.models.registry import build_model

ROOT = Path(__file__).parents[2]
CAUSAL_RECIPE = ROOT / "recipes" / "demo-causal.yaml"
RATE = 8000


def sepkit(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sepkit", *args], capture_output=True, text=True, timeout=timeout
    )


def stream(run: Path, mixture: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return sepkit("stream", "--run-dir", str(run), str(mixture), "--out", str(out), *extra)


def failed_clearly(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("sepkit: error:")
    for word in words:
        assert word in result.stderr, result.stderr


@pytest.fixture(scope="module")
def causal_run(demo_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The causal recipe, as shipped, trained for two steps."""
    run_dir = tmp_path_factory.mktemp("causal") / "run"
    overrides = train_overrides(
        demo_corpus,
        "train.max_steps=2",
        "data.dynamic_mixing=false",
        "data.speed_perturb=false",
        model=[],
    )
    result = sepkit("train", str(CAUSAL_RECIPE), "--run-dir", str(run_dir), "--no-test", *overrides)
    assert result.returncode == 0, result.stderr
    return run_dir


@pytest.fixture(scope="module")
def mixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real LibriSpeech speakers, 2.5 s at 8 kHz."""
    first, second = (
        sorted(REAL_SPEECH.glob("103/*/*.flac"))[0],
        sorted(REAL_SPEECH.glob("1040/*/*.flac"))[0],
    )
    a, _ = sf.read(str(first), dtype="float32")
    b, _ = sf.read(str(second), dtype="float32")
    mix = a[RATE : RATE + 20001] + b[RATE : RATE + 20001]
    path = tmp_path_factory.mktemp("input") / "mix.wav"
    sf.write(str(path), 0.3 * mix / np.abs(mix).max(), RATE, subtype="FLOAT")
    return path


@pytest.fixture(scope="module")
def non_causal_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "convtasnet.pt"
    model = build_model({"name": "convtasnet", "N": 16, "L": 16, "B": 16, "H": 16, "X": 2, "R": 1})
    save_model(path, model, extra={"sample_rate": RATE})
    return path


def test_stream_a_file_equals_offline_separation(
    causal_run: Path, mixture: Path, tmp_path: Path
) -> None:
    result = stream(causal_run, mixture, tmp_path, "--block-size", "37")
    assert result.returncode == 0, result.stderr
    assert "algorithmic latency 4.0 ms" in result.stdout
    assert "real-time factor" in result.stdout
    streamed = np.stack(
        [sf.read(str(tmp_path / f"mix_s{k}.wav"), dtype="float32")[0] for k in (1, 2)]
    )
    separator = Separator.from_pretrained(causal_run)
    mix, _ = sf.read(str(mixture), dtype="float32")
    with torch.no_grad():
        offline = separator.base_model(torch.from_numpy(mix)[None])[0].numpy()
    assert streamed.shape == offline.shape == (2, 20001)
    np.testing.assert_allclose(streamed, offline, rtol=0, atol=1e-5)


def test_export_the_causal_run_as_a_stream_and_as_a_whole_signal_model(
    causal_run: Path, tmp_path: Path
) -> None:
    pytest.importorskip(
        "onnxruntime", reason="onnxruntime is not installed (pip install 'sepkit[test]')"
    )
    for form, extra in (("stream", ["--stream"]), ("whole_signal", [])):
        out = tmp_path / f"{form}.onnx"
        result = sepkit(
            "export", "--run-dir", str(causal_run), "--format", "onnx", "--out", str(out), *extra
        )
        assert result.returncode == 0, result.stderr
        assert f"form={form}" in result.stdout and "sample_rate=8000" in result.stdout
        worst = float(result.stdout.split("max abs difference to PyTorch ")[1].split()[0])
        assert worst <= 1e-4
        assert out.is_file() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("command", ["stream", "export"])
def test_a_run_without_a_checkpoint(command: str, tmp_path: Path, mixture: Path) -> None:
    (tmp_path / "run").mkdir()
    args = (
        [str(mixture), "--out", str(tmp_path)]
        if command == "stream"
        else ["--out", str(tmp_path / "m.onnx")]
    )
    failed_clearly(
        sepkit(command, "--run-dir", str(tmp_path / "run"), *args), "no checkpoint found"
    )


def test_an_unsupported_model_is_named_and_an_existing_file_kept(
    non_causal_model: Path, mixture: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model.onnx"
    out.write_bytes(b"an earlier export")
    result = sepkit("export", "--checkpoint", str(non_causal_model), "--out", str(out), "--stream")
    failed_clearly(result, "looks at future frames", "causal: true")
    assert out.read_bytes() == b"an earlier export"
    result = sepkit(
        "stream", "--checkpoint", str(non_causal_model), str(mixture), "--out", str(tmp_path)
    )
    failed_clearly(result, "looks at future frames")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_an_output_folder_that_does_not_exist(non_causal_model: Path, tmp_path: Path) -> None:
    result = sepkit(
        "export", "--checkpoint", str(non_causal_model), "--out", str(tmp_path / "nope" / "m.onnx")
    )
    failed_clearly(result, "nope", "does not exist")


@contextlib.contextmanager
def read_only_folder(path: Path) -> Iterator[Path]:
    """A folder nobody may write to: a read-only tmpfs as root (root ignores modes), else
    mode 555."""
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode:
        pytest.skip("running as root without mount: no way to make a folder read-only here")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_an_output_folder_that_is_read_only(non_causal_model: Path, tmp_path: Path) -> None:
    with read_only_folder(tmp_path / "ro") as folder:
        result = sepkit(
            "export", "--checkpoint", str(non_causal_model), "--out", str(folder / "m.onnx")
        )
        failed_clearly(result, str(folder), "not writable")


def test_a_block_size_of_zero(causal_run: Path, mixture: Path, tmp_path: Path) -> None:
    result = stream(causal_run, mixture, tmp_path, "--block-size", "0")
    failed_clearly(result, "--block-size 0")
    assert not list(tmp_path.iterdir())


def test_a_sample_rate_mismatch_in_streaming(
    causal_run: Path, mixture: Path, tmp_path: Path
) -> None:
    audio, _ = sf.read(str(mixture), dtype="float32")
    wrong = tmp_path / "at16k.wav"
    sf.write(str(wrong), np.repeat(audio, 2), 16000)
    out = tmp_path / "out"
    out.mkdir()
    result = stream(causal_run, wrong, out)
    failed_clearly(result, str(wrong), "sample-rate mismatch", "16000 Hz", "8000 Hz")
    assert not list(out.iterdir())
    with pytest.raises(Exception, match="sample-rate mismatch"):
        Separator.from_pretrained(causal_run).stream(sample_rate=16000)
