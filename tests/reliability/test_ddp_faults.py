"""DDP faults (issue #9): real torchrun jobs (gloo, 2 ranks) with a NaN on one rank only, one
rank's examples all filtered, one rank raising an error alone, and one rank of a ``sepkit train``
job SIGKILLed. Skips stay synchronised and exact, no job hangs (every job is bounded by a
timeout), a broken job ends within seconds and the same command resumes it. The reduced form (one
run of each) of ``bench/faults.py --only ddp``; the scenarios are in :mod:`helpers.faults.ddp`."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from helpers import ddp_scenarios as sc
from helpers.faults import assert_all_ok, ddp


def test_reduced_form_runs_the_classic_variants() -> None:
    # The first variants are the former tests of tests/distributed/test_ddp.py, folded in here.
    assert ddp.nan_variant(0) == sc.Fault(rank=1, step=sc.NAN_STEP, where="mix", value=math.nan)
    assert ddp.filtered_variant(0) == sc.Filtered(rank=0, batch=0)
    # and the full form varies rank, step, place and value
    variants = {ddp.nan_variant(i) for i in range(ddp.FULL.runs)}
    assert {v.rank for v in variants} == {0, 1} and {v.where for v in variants} == {"mix", "grad"}
    assert len({v.step for v in variants}) == sc.STEPS - 1
    assert {ddp.filtered_variant(i).rank for i in range(ddp.FULL.runs)} == {0, 1}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_faults_on_one_rank_never_hang_and_skips_stay_in_step(
    demo_corpus: Path, tmp_path: Path
) -> None:
    m = ddp.measure(tmp_path, demo_corpus, full=False)
    assert_all_ok(ddp.figures(m))
    for outcome in (*m.nan, *m.filtered, *m.failures, *m.kills):
        assert not outcome.hang and not outcome.problems, outcome
    # Both ranks skipped the poisoned step, and only it, with the same counters.
    results = sc.load_results(tmp_path / "nan-0")
    assert [r["skip_reasons"] for r in results] == [{"nonfinite_loss": 1}] * 2
    assert [r["losses"][sc.NAN_STEP] for r in results] == [0.0, 0.0]
    # A broken job ends within seconds, not at the process group's 30-minute timeout.
    for outcome in (*m.failures, *m.kills):
        assert outcome.exit_seconds is not None
        assert outcome.exit_seconds <= ddp.EXIT_REQUIRED_S, outcome
    # The killed job was resumed by the same command and reached its last step.
    assert (tmp_path / "kill-0" / "checkpoints").is_dir()
    assert "resumed from" in (tmp_path / "kill-0" / "train.log").read_text()
