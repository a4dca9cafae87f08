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


@pytest.mark.slow
def test_resume_is_exact_when_accumulation_cycles_meet_an_epoch_end(
    demo_corpus: Path, tmp_path: Path
) -> None:
    """Issue 19.4. grad_accumulation=3 with 4 batches an epoch: before, the epoch-end checkpoint
    was written mid-cycle with pending gradients, which a resume dropped, so a run stopped after
    epoch 1 and resumed (the same as one killed after that checkpoint) left the uninterrupted
    run. Now a cycle cut short by an epoch end updates from the micro-batches it has, so every
    checkpoint falls between cycles."""
    from helpers.faults.train_runs import final_state, run_to_end, same_weights, train_command

    common = ("train.grad_accumulation=3", "data.batch_size=5", "seed=4")  # 24 // 5 = 4 batches
    logs = tmp_path / "logs"
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    code, out = run_to_end(
        train_command(reference, demo_corpus, *common, "train.epochs=3"), logs, "ref"
    )
    assert code == 0, out[-2000:]
    code, out = run_to_end(
        train_command(resumed, demo_corpus, *common, "train.epochs=1"), logs, "a"
    )
    assert code == 0, out[-2000:]
    code, out = run_to_end(
        train_command(resumed, demo_corpus, *common, "train.epochs=3"), logs, "b"
    )
    assert code == 0, out[-2000:]
    assert "resumed from" in (resumed / "train.log").read_text()
    expected, final = final_state(reference), final_state(resumed)
    assert final["trainer"]["step"] == expected["trainer"]["step"] == 12
    assert final["trainer"]["updates"] == expected["trainer"]["updates"] == 6  # 2 per epoch
    assert same_weights(final["model_state"], expected["model_state"]) == []
