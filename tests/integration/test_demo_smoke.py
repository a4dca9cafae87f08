"""`sepkit demo --minutes 2`: the whole chain a new user runs first, end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_fast_path_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "sepkit", "demo", "--out", str(out), "--minutes", "2"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    run = out / "run"
    summary = json.loads((run / "test_summary.json").read_text())
    si_snr_i = summary["metrics"]["si_snr_i"]["mean"]
    assert si_snr_i > 0, f"the demo did not learn to separate: SI-SNRi {si_snr_i:.2f} dB"
    assert (run / "report.html").is_file()
    assert len(list((run / "audio").iterdir())) == 10
    assert "test SI-SNRi" in result.stdout
    # Running it again reuses the corpus and the finished training.
    again = subprocess.run(
        [sys.executable, "-m", "sepkit", "demo", "--out", str(out), "--minutes", "2"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert again.returncode == 0, again.stderr[-4000:]
    assert json.loads((run / "test_summary.json").read_text())["metrics"]["si_snr_i"]["mean"] == (
        pytest.approx(si_snr_i, abs=1e-6)
    )
