"""Real torchrun processes (gloo, 2 ranks): two ranks with B/2 each equal one process with B.

The fault scenarios (NaN on one rank only, one rank's examples all filtered, a rank killed) are in
``tests/reliability/test_ddp_faults.py`` (``helpers/faults/ddp.py``).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from helpers import ddp_scenarios as sc


def assert_same_weights(a: dict, b: dict, **tol: float) -> None:
    for key in a:
        torch.testing.assert_close(a[key], b[key], **tol, msg=lambda m, k=key: f"{k}: {m}")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["same_as_single", "grad_accumulation"])
def test_two_ranks_equal_one_process(name: str, tmp_path: Path) -> None:
    started = time.monotonic()
    proc = sc.run_worker(name, tmp_path)  # a hang raises TimeoutExpired instead of blocking CI
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"{name}: {time.monotonic() - started:.1f} s")
    r0, r1 = sc.load_results(tmp_path)
    reference = sc.single_process(name)
    assert r0["updates"] == reference.updates
    assert_same_weights(r0["state"], r1["state"], rtol=0, atol=0)
    assert_same_weights(r0["state"], reference.module.state_dict(), rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_validation_counts_each_example_once(tmp_path: Path) -> None:
    """Issue 19.6. Before: validation summed every rank's examples, the sampler's padding
    repeats included, so 2 ranks on 5 examples scored 6 and the loss (and best.pt) depended on
    the world size."""
    proc = sc.run_worker("odd_validation", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = sc.load_results(tmp_path)
    reference = sc.single_process("odd_validation")
    expected = reference.evaluate(sc.validation_loader())
    assert_same_weights(r0["state"], reference.module.state_dict(), rtol=1e-5, atol=1e-7)
    assert r0["valid_loss"] == r1["valid_loss"]
    assert r0["valid_loss"] == pytest.approx(expected, rel=1e-6, abs=1e-6)
