"""Crashes (issue #9): SIGKILL a real ``sepkit train`` at random moments and in the middle of
checkpoint writes, restart it with the same command each time; it must resume from the newest
checkpoint and end bit-identical to an uninterrupted run. The reduced form (3 kills) of
``bench/faults.py --only crashes``; the scenario and what it checks are in
:mod:`helpers.faults.crashes`."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.faults import Figure, assert_all_ok, crashes


def measured(figures: list[Figure], name_start: str) -> str:
    """The value of the one figure whose name starts with ``name_start``."""
    (figure,) = [f for f in figures if f.name.startswith(name_start)]
    return figure.value


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_sigkill_then_restart_resumes_exactly(demo_corpus: Path, tmp_path: Path) -> None:
    figures = crashes.run(tmp_path, demo_corpus, full=False)
    assert_all_ok(figures)
    assert measured(figures, "SIGKILLs") == str(crashes.CI.kills)
    assert int(measured(figures, "kills that landed during a checkpoint write").split()[0]) >= 1
    assert measured(figures, "corrupt or unloadable checkpoints") == "0"
    assert measured(figures, "final weights bit-identical") == "yes"
    assert measured(figures, "duplicate steps in metrics.csv") == "0"
    # Every kill left the run directory clean for the next start: nothing half-written remains.
    killed = tmp_path / "killed"
    assert not [p for p in killed.rglob("*") if p.name.endswith((".tmp", ".corrupt"))]
