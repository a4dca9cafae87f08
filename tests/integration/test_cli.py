"""The sepkit command as a user runs it: help texts, and errors that name the culprit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers.training import DEMO_RECIPE, train_overrides

from sepkit.cli import main

RECIPE = DEMO_RECIPE
SUBCOMMANDS = [
    "demo",
    "prepare",
    "prepare-demo",
    "train",
    "evaluate",
    "separate",
    "stream",
    "export",
    "report",
    "import-speechbrain",
]


def sepkit(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sepkit", *args], capture_output=True, text=True, timeout=timeout
    )


def test_help_lists_every_subcommand() -> None:
    result = sepkit("--help")
    assert result.returncode == 0
    for name in SUBCOMMANDS:
        assert name in result.stdout


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_subcommand_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    assert "usage: sepkit " + name in capsys.readouterr().out


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.treshold=-20", "train.treshold: unknown key (did you mean 'threshold'?)"),
        ("data.batch_size=two", "data.batch_size: expected an integer, got 'two'"),
        ("model.preset=huge", "model.preset: unknown preset 'huge'"),
    ],
)
def test_bad_override_is_one_clear_error(override: str, expected: str, tmp_path: Path) -> None:
    result = sepkit("train", str(RECIPE), "--run-dir", str(tmp_path / "run"), override)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_resume_with_changed_settings_is_refused(demo_corpus: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = sepkit(
        "train", str(RECIPE), "--run-dir", str(run), "--no-test",
        *train_overrides(demo_corpus, "train.max_steps=2"),
    )  # fmt: skip
    assert first.returncode == 0, first.stderr[-2000:]
    changed = sepkit(
        "train", str(RECIPE), "--run-dir", str(run), "--no-test",
        *train_overrides(demo_corpus, "train.max_steps=4", "optim.lr=0.5"),
    )  # fmt: skip
    assert changed.returncode == 2
    recipe_lr = yaml.safe_load(RECIPE.read_text())["optim"]["lr"]
    assert f"optim.lr: {recipe_lr} -> 0.5" in changed.stderr
    # A longer budget, or another way of running the test pass, is a legitimate resume.
    longer = sepkit(
        "train", str(RECIPE), "--run-dir", str(run), "--no-test",
        *train_overrides(demo_corpus, "train.max_steps=4", "train.test_shifts=2"),
    )  # fmt: skip
    assert longer.returncode == 0, longer.stderr[-2000:]
    assert "resumed from" in (run / "train.log").read_text()


def test_second_trainer_on_a_busy_run_dir_is_refused(demo_corpus: Path, tmp_path: Path) -> None:
    """While a process holds the run directory, another `sepkit train` on it stops at once with a
    clear error and writes nothing there (its start-up cleanup would delete live temp files)."""
    from sepkit.run import RUN_LOCK
    from sepkit.utils.io import exclusive_lock

    run = tmp_path / "run"
    args = ("train", str(RECIPE), "--run-dir", str(run), "--no-test")
    with exclusive_lock(run / RUN_LOCK):
        busy = sepkit(*args, *train_overrides(demo_corpus, "train.max_steps=1"))
        assert busy.returncode == 2
        assert f"{run}: in use by another sepkit process (pid " in busy.stderr
        assert [p.name for p in run.iterdir()] == [RUN_LOCK]
    free = sepkit(*args, *train_overrides(demo_corpus, "train.max_steps=1"))
    assert free.returncode == 0, free.stderr[-2000:]


def test_progress_in_a_log_file_is_not_a_stale_count(demo_corpus: Path, tmp_path: Path) -> None:
    """Training with stderr into a file (a cluster job's log): the bar is drawn when its count
    moves on, not every 10 steps with the count it had 30 s before ("0/12", "0/12", ...)."""
    result = sepkit(
        "train", str(RECIPE), "--run-dir", str(tmp_path / "run"), "--no-test",
        *train_overrides(
            demo_corpus, "train.epochs=2", "train.progress_bar=true", "data.batch_size=1"
        ),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    drawn = [part for part in result.stderr.replace("\r", "\n").splitlines() if "/24 [" in part]
    counts = [part.split("|")[-1].split("[")[0].strip() for part in drawn]
    assert drawn, result.stderr[-2000:]
    # 24 steps an epoch in a few seconds: the first draw ("0/24"), and at most one more per
    # epoch; redrawn every 10 steps, the old bar printed "0/24" three times an epoch
    assert len(counts) <= 2 * 2, counts


def test_a_run_that_only_skips_stops_with_exit_4(demo_corpus: Path, tmp_path: Path) -> None:
    """Issue 19.2: a wrong sign in train.threshold filters every example. Before, the run spent
    its budget with 0 updates and exited 0; now it stops after train.nonfinite_patience batches,
    checkpoints and exits 4 with a message that says why."""
    run = tmp_path / "run"
    result = sepkit(
        "train", str(RECIPE), "--run-dir", str(run), "--no-test",
        *train_overrides(demo_corpus, "train.threshold=60", "train.nonfinite_patience=4"),
    )  # fmt: skip
    assert result.returncode == 4, result.stderr[-2000:]
    assert "sepkit: error: train.nonfinite_patience: 4 training batches in a row" in result.stderr
    assert "train.threshold=60.0" in result.stderr
    assert "Traceback" not in result.stderr
    assert list((run / "checkpoints").glob("*.pt")), "the state at the stop is saved"
