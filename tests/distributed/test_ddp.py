"""Real torchrun processes (gloo, 2 ranks): synchronised skips, exact filtering, no hangs."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import ddp_scenarios as sc

from sepkit.training.trainer import Trainer

WORKER = Path(__file__).with_name("ddp_worker.py")
TIMEOUT = 180  # a hang fails the test instead of blocking CI


def torchrun(*args: str, nproc: int = 2) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        *args,
    ]


def run_scenario(name: str, out: Path) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = time.monotonic()
    proc = subprocess.run(
        torchrun(str(WORKER), name, str(out)),
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"{name}: {time.monotonic() - started:.1f} s")
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


def single_process(name: str) -> Trainer:
    cfg, batches = sc.scenario(name)
    model = sc.make_model()
    trainer = Trainer(model, sc.make_optimizer(model), cfg, device="cpu")
    for batch in batches:
        trainer.fit_batch(batch)
    return trainer


def assert_same_weights(a: dict, b: dict, **tol: float) -> None:
    for key in a:
        torch.testing.assert_close(a[key], b[key], **tol, msg=lambda m, k=key: f"{k}: {m}")


@pytest.mark.slow
def test_nan_on_one_rank_skips_on_all_and_nobody_hangs(tmp_path: Path) -> None:
    r0, r1 = run_scenario("nan_on_rank1", tmp_path)
    for result in (r0, r1):
        assert result["losses"][sc.NAN_STEP] == 0.0
        assert result["nonfinite_count"] == 1
        assert result["skip_reasons"] == {"nonfinite_loss": 1}
        assert result["updates"] == sc.STEPS - 1
        assert all(math.isfinite(v.abs().sum()) for v in result["state"].values())
    assert_same_weights(r0["state"], r1["state"], rtol=0, atol=0)  # bit-identical across ranks
    # and equal to one process taking the same decisions on the whole batches
    reference = single_process("nan_on_rank1")
    assert reference.nonfinite_count == 1
    assert_same_weights(r0["state"], reference.module.state_dict(), rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_rank_with_all_examples_filtered_matches_single_process(tmp_path: Path) -> None:
    r0, r1 = run_scenario("rank0_all_filtered", tmp_path)
    reference = single_process("rank0_all_filtered")
    assert reference.updates == 1 and r0["updates"] == r1["updates"] == 1
    assert r0["losses"][0] == pytest.approx(r1["losses"][0])
    assert_same_weights(r0["state"], r1["state"], rtol=0, atol=0)
    assert_same_weights(r0["state"], reference.module.state_dict(), rtol=1e-5, atol=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["same_as_single", "grad_accumulation"])
def test_two_ranks_equal_one_process(name: str, tmp_path: Path) -> None:
    r0, r1 = run_scenario(name, tmp_path)
    reference = single_process(name)
    assert r0["updates"] == reference.updates
    assert_same_weights(r0["state"], r1["state"], rtol=0, atol=0)
    assert_same_weights(r0["state"], reference.module.state_dict(), rtol=1e-5, atol=1e-7)
