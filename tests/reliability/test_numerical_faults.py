"""Numerical faults (issue #9): NaN/+inf/-inf in the input, the target, the model's output and the
gradient at random steps of a real training run, a silent target, a silent example and a huge
example. Each nonfinite fault must skip exactly its own step and touch no weight; the others must
train normally; the run must end as well as a clean one. The reduced form of
``bench/faults.py --only numerical``; the faults and the decisions are in
:mod:`helpers.faults.numerical`."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from helpers.faults import assert_all_ok, numerical


@pytest.mark.slow
def test_each_nonfinite_fault_skips_its_step_and_nothing_else(
    demo_corpus: Path, tmp_path: Path
) -> None:
    m = numerical.measure(tmp_path, demo_corpus, full=False)
    assert_all_ok(numerical.figures(m))
    faulty = m.faulty
    # Every kind was injected, and the steps metrics.csv marks skipped are exactly the steps of
    # the nonfinite faults (rows are numbered after the step: injection step + 1).
    assert len(faulty.applied) == len(m.plan) == 15 * m.size.per_kind
    skipped = {step - 1 for step, row in faulty.rows.items() if row["skipped"] == "1"}
    assert skipped == {step for step, fault in m.plan.items() if fault.expected_reason}
    for applied in faulty.applied:
        row = faulty.rows[applied.injection.step + 1]
        assert row["reason"] == applied.injection.expected_reason, applied
        # A step skipped for its loss logs 0.0; any other step (a gradient skip too) its loss.
        loss = float(row["loss"])
        assert loss == 0.0 if row["reason"] == "nonfinite_loss" else math.isfinite(loss), applied
    assert faulty.nonfinite_count == len(skipped)
    assert faulty.skip_reasons == {"nonfinite_loss": 9, "nonfinite_grad": 3}
    assert m.clean.nonfinite_count == 0
    assert faulty.nonfinite_weights == 0 and faulty.nonfinite_optimizer_state == 0
    difference = faulty.valid_loss - m.clean.valid_loss
    assert abs(difference) <= numerical.VALID_TOLERANCE_DB, (m.clean.valid_loss, faulty.valid_loss)
