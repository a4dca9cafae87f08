"""Bad inputs (issue #9): every kind is refused with one clear error naming the culprit, nothing
crashes and nothing is lost. The reduced form of ``bench/faults.py --only bad_inputs``; the
scenarios and what each checks are in :mod:`helpers.faults.bad_inputs`."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.faults import assert_all_ok, bad_inputs


@pytest.mark.slow
def test_bad_inputs_are_refused_clearly_without_loss(demo_corpus: Path, tmp_path: Path) -> None:
    outcomes = bad_inputs.run_kinds(tmp_path, demo_corpus, full=False)
    failing = [o.describe() for o in outcomes if not o.ok]
    assert not failing, "kinds that failed:\n" + "\n".join(failing)
    assert_all_ok(bad_inputs.figures(outcomes))
