"""Peak memory of ``sepkit separate`` against input length (the issue asks for 10 s, 60 s, 600 s).

Each run is a fresh process (``python -m sepkit.inference``, what ``sepkit separate`` calls), so
its peak RSS (``ru_maxrss`` from ``wait4``) is its own. Inputs are 16 kHz WAV files for an 8 kHz
model, so the streaming resamplers are part of the measurement. With chunking, peak RSS should be
flat in the input length; ``--unchunked`` adds runs with ``--chunk-seconds 0`` for contrast.

    .venv/bin/python bench/separate_memory.py                 # 10, 60, 600 s, Conv-TasNet small
    .venv/bin/python bench/separate_memory.py --seconds 10 60 --unchunked
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

INPUT_RATE = 16000
MODEL_RATE = 8000


def write_input(path: Path, seconds: float, seed: int = 0) -> None:
    """Speech-like test signal written block by block (the writer's memory stays small too)."""
    rng = np.random.default_rng(seed)
    with sf.SoundFile(path, "w", samplerate=INPUT_RATE, channels=1, subtype="PCM_16") as out:
        done, block = 0, INPUT_RATE * 10
        total = int(seconds * INPUT_RATE)
        while done < total:
            n = min(block, total - done)
            t = (done + np.arange(n)) / INPUT_RATE
            voices = np.sin(2 * np.pi * 140 * t) * (np.sin(2 * np.pi * 3 * t) > 0) + 0.7 * np.sin(
                2 * np.pi * 230 * t + np.sin(2 * np.pi * 0.5 * t)
            ) * (np.sin(2 * np.pi * 2.3 * t) > 0.2)
            out.write(0.2 * voices + 0.01 * rng.standard_normal(n))
            done += n


def measure(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one child process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {err}")
    return wall, usage.ru_maxrss / 1024  # Linux: KiB


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[10, 60, 600])
    parser.add_argument("--model", default="convtasnet")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--unchunked", action="store_true", help="also run with --chunk-seconds 0")
    args = parser.parse_args(argv)
    from sepkit.models.io import save_model
    from sepkit.models.registry import build_model

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="sepkit-mem-") as tmp:
        root = Path(tmp)
        model_file = root / "model.pt"
        save_model(
            model_file,
            build_model({"name": args.model, "preset": args.preset}),
            extra={"sample_rate": MODEL_RATE},
        )
        modes = [("chunked 8 s / 1 s", [])] + (
            [("unchunked", ["--chunk-seconds", "0"])] if args.unchunked else []
        )
        print(f"{args.model}/{args.preset}, {INPUT_RATE} Hz input, {MODEL_RATE} Hz model, 1 thread")
        print(f"{'input':>8}  {'mode':<18} {'wall s':>8} {'x realtime':>10} {'peak RSS MiB':>13}")
        for seconds in args.seconds:
            wav = root / f"in_{int(seconds)}s.wav"
            write_input(wav, seconds)
            for label, extra in modes:
                cmd = [sys.executable, "-m", "sepkit.inference", "--checkpoint", str(model_file)]
                cmd += [str(wav), "--out", str(root / "out"), *extra]
                wall, rss = measure(cmd)
                print(
                    f"{seconds:>7.0f}s  {label:<18} {wall:8.1f} {seconds / wall:10.1f} {rss:13.0f}"
                )
                for produced in (root / "out").glob("*.wav"):
                    assert sf.info(str(produced)).frames == int(seconds * INPUT_RATE)
                    produced.unlink()
            wav.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
