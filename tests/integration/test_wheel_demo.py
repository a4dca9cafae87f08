"""`pip install sepkit; sepkit demo`: the wheel carries the recipes and the real speech it needs.

The wheel is built from the checkout and installed into a folder of its own; the demo then runs
from a directory outside the checkout, with that folder first on the path, so every file it reads
must come from the wheel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.mark.slow
def test_installed_wheel_runs_the_real_speech_demo(tmp_path: Path) -> None:
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = next((tmp_path / "dist").glob("sepkit-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "sepkit/recipes/demo.yaml" in names and "sepkit/recipes/demo-synthetic.yaml" in names
    flacs = [
        n for n in names if n.startswith("sepkit/corpora/librispeech-mini/") and n.endswith(".flac")
    ]
    assert len(flacs) == 200
    assert "sepkit/corpora/librispeech-mini/LICENSE.TXT" in names

    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run(
        [sys.executable, "-c", "import sepkit; print(sepkit.__file__)"],
        capture_output=True, text=True, cwd=work, env=env, timeout=60,
    )  # fmt: skip
    assert where.stdout.startswith(str(site)), where.stdout + where.stderr
    demo = subprocess.run(
        [sys.executable, "-m", "sepkit", "demo", "--out", "demo", "--minutes", "0.2", "--procs", "1"],
        capture_output=True, text=True, cwd=work, env=env, timeout=600,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr[-4000:]
    assert "held-out real speakers" in demo.stdout
    summary = json.loads((work / "demo" / "run" / "test_summary.json").read_text())
    assert summary["test_set"]["kind"] == "real"
    corpus = json.loads((work / "demo" / "corpus" / "corpus.json").read_text())
    assert corpus["summary"]["source"].startswith(str(site))
