"""Stress the end of 2-rank torchrun jobs: how often does a finished job die in gloo's teardown?

The full fault suite once saw rank 1 of a finished, re-run job abort with ``terminate called
without an active exception`` after sepkit's final barrier (docs/reliability.md, "Open"). This
script runs many short jobs, each a run and then a resume of it, ``--parallel`` loops at a time to
load the machine, and counts exits that are not clean. Failing outputs are kept under ``--work``.

    python bench/ddp_teardown.py [--pairs 20] [--parallel 2] [--work DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from helpers import ddp_scenarios as sc  # noqa: E402
from helpers.corpus import make_test_corpus  # noqa: E402
from helpers.training import train_args  # noqa: E402

STEPS = (6, 14)  # a run to step 6, then a resume of it to step 14


def job_pair(corpus: Path, work: Path, index: int) -> list[str]:
    """Run then resume one job; the outcome of each launch ("ok", "abort", "failed")."""
    outcomes = []
    run_dir = work / f"job{index}"
    for steps in STEPS:
        extra = ("train.epochs=1000", f"train.max_steps={steps}", "train.checkpoint_every_steps=2")
        command = sc.torchrun("-m", *train_args(run_dir, corpus, *extra))
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        if proc.returncode == 0:
            outcomes.append("ok")
            continue
        text = proc.stdout + proc.stderr
        (work / f"job{index}-{steps}.out").write_text(text)
        outcomes.append("abort" if "terminate called" in text or "SIGABRT" in text else "failed")
    return outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20, help="run+resume pairs per loop")
    parser.add_argument("--parallel", type=int, default=2, help="loops at a time")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="sepkit-teardown-"))
    work.mkdir(parents=True, exist_ok=True)

    corpus = make_test_corpus(work / "corpus")
    total = args.pairs * args.parallel
    with ThreadPoolExecutor(args.parallel) as pool:
        results = [
            o for pair in pool.map(lambda i: job_pair(corpus, work, i), range(total)) for o in pair
        ]
    counts = {k: results.count(k) for k in ("ok", "abort", "failed")}
    print(f"launches {len(results)}: {counts} (outputs of failures in {work})")
    return 0 if counts["ok"] == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
