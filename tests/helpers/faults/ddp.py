"""DDP faults: real torchrun jobs (gloo, 2 ranks) with a fault on one rank; nothing may hang.

Four scenarios, each run :attr:`Size.runs` times, every job bounded by a timeout (a job still
running at its timeout counts as a hang and is killed with all its workers):

* **NaN on one rank only** (``helpers/ddp_worker.py``, the real ``Trainer`` under DDP on fixed
  batches): a NaN/+inf/-inf in one mixture sample of one rank's slice, or in one gradient element
  on one rank, at a step, rank and value that vary from run to run. Every rank must skip that step
  and only that step, with the same reason (``nonfinite_loss`` / ``nonfinite_grad``), end with
  bit-identical weights across ranks, finite, and equal to one process taking the same decisions on
  the whole batches.
* **One rank's examples all filtered**: the threshold leaves nothing of one rank's slice (which
  rank, which batch vary). That rank still runs a (zero) backward so DDP's all-reduce cannot hang;
  the step is the mean over the other rank's examples: both ranks report the same loss and end
  bit-identical, equal to one process on the whole batch.
* **A rank fails alone**: one rank raises an error of its own at a step (a bad file, an
  out-of-memory error...) while the other waits for it in the step's all-reduce. The job must end
  within :data:`EXIT_REQUIRED_S`, non-zero, with the error and the rank in its output. (It used to
  hang for the process group's 30-minute timeout: the failing rank waited in the shutdown barrier
  for a peer that was waiting for it; ``sepkit.training.distributed.shutdown`` now leaves without
  a barrier after an error.)
* **A rank SIGKILLed** mid-training in a real ``torchrun ... -m sepkit train`` job (the rank and
  the step vary, seeded: the kill falls the moment the checkpoint of one of
  :data:`KILL_AT_CHECKPOINTS` is on disk, so it lands on any machine, however fast, with the
  ranks in their next steps): the job must end -- not hang on the dead peer --
  within :data:`EXIT_LIMIT_S`, with a non-zero status and torchrun's report naming the killed rank
  and the signal, leaving no worker behind; then the unchanged command resumes from the last
  checkpoint and finishes. In the full form each resumed run's final weights are also compared with
  one uninterrupted run of the same command: bit-identical.

The reduced form (1 run of each) replaces the former ``nan_on_rank1`` / ``rank0_all_filtered``
tests of ``tests/distributed/test_ddp.py``: its first variants are exactly those.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import re
import signal
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch

from helpers import ddp_scenarios as sc
from helpers.faults import Figure
from helpers.processes import descendants, kill_tree
from helpers.training import train_args
from sepkit.training.checkpoint import CheckpointManager, load_checkpoint

CATEGORY = "ddp"
SEED = 9
#: After a rank is killed, torchrun notices within its monitor interval (0.1 s), SIGTERMs the
#: other ranks and exits; a job still running this long after the kill has hung.
EXIT_LIMIT_S = 60.0
#: Requirement on the time from the kill to the end of the job (torch elastic's own grace period
#: for the surviving ranks is 30 s; a rank stuck in a collective would use it all).
EXIT_REQUIRED_S = 15.0
#: A ``sepkit train`` job of this size takes ~10-30 s on 2 cores; a job running 5 min has hung.
JOB_TIMEOUT_S = 300.0
#: The kill falls the moment the job has written the checkpoint of one of these steps (seeded-
#: random): a point in the *run*, not a delay, so a fast machine cannot finish the job first. The
#: last candidate leaves 60 steps (and a validation) between the kill and the job's end. (A
#: delay of 0-2.5 s after the first checkpoint missed the job twice in 20 on a faster machine.)
KILL_AT_CHECKPOINTS = (10, 20, 30, 40, 50, 60)
KILL_JOB = ("train.epochs=1000", "train.max_steps=120", "train.checkpoint_every_steps=10")


@dataclass(frozen=True)
class Size:
    runs: int  # of each scenario


CI = Size(runs=1)
FULL = Size(runs=20)


@dataclass
class Outcome:
    """One run of a scenario."""

    label: str
    hang: bool = False
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    exit_seconds: float | None = None  # kill scenario: from the kill to the end of the job

    @property
    def ok(self) -> bool:
        return not self.hang and not self.problems


# ------------------------------------------------------------------ NaN / filtered --------------
def nan_variant(index: int) -> sc.Fault:
    """Run ``index``'s fault; run 0 is the classic one (NaN in rank 1's mixture at step 2)."""
    kinds = [("mix", math.nan), ("grad", math.nan), ("mix", math.inf), ("grad", math.inf),
             ("mix", -math.inf)]  # fmt: skip
    where, value = kinds[index % len(kinds)]
    step = 1 + (sc.NAN_STEP - 1 + index) % (sc.STEPS - 1)  # never step 0: Adam-free SGD anyway
    return sc.Fault(rank=1 - index % 2, step=step, where=where, value=value)


def filtered_variant(index: int) -> sc.Filtered:
    """Run ``index``'s variant; run 0 is the classic one (rank 0 filtered on batch 0)."""
    return sc.Filtered(rank=index % 2, batch=index // 2)


def failure_variant(index: int) -> sc.Failure:
    return sc.Failure(rank=1 - index % 2, step=1 + index % (sc.STEPS - 1))


def nan_problems(fault: sc.Fault, results: list[dict[str, Any]], spec: str) -> list[str]:
    reference = sc.single_process("nan_on_rank", spec)
    found = []
    for rank, result in enumerate(results):
        if result["skip_reasons"] != {fault.reason: 1} or result["nonfinite_count"] != 1:
            found.append(f"rank {rank} skips {result['skip_reasons']}")
        # A loss fault logs 0.0 at its step; a gradient fault logs the step's (finite) loss.
        loss = result["losses"][fault.step]
        loss_ok = loss == 0.0 if fault.where == "mix" else math.isfinite(loss) and loss != 0.0
        if not loss_ok or result["updates"] != sc.STEPS - 1:
            found.append(f"rank {rank}: loss {result['losses']}, {result['updates']} updates")
        if not all(bool(torch.isfinite(v).all()) for v in result["state"].values()):
            found.append(f"rank {rank}: nonfinite weights")
    if results[0]["losses"] != results[1]["losses"]:
        found.append(f"losses differ across ranks: {[r['losses'] for r in results]}")
    if reference.skip_reasons != {fault.reason: 1}:
        found.append(f"single process skips {dict(reference.skip_reasons)}")
    return found + _weights_problems(results, reference.module.state_dict())


def filtered_problems(results: list[dict[str, Any]], spec: str) -> list[str]:
    reference = sc.single_process("rank_all_filtered", spec)
    found = []
    losses = [result["losses"][0] for result in results]
    if not all(result["updates"] == 1 for result in results) or reference.updates != 1:
        found.append(f"updates {[r['updates'] for r in results]}, single {reference.updates}")
    if not math.isclose(losses[0], losses[1], rel_tol=1e-6):
        found.append(f"losses differ across ranks: {losses}")
    return found + _weights_problems(results, reference.module.state_dict())


def _weights_problems(results: list[dict[str, Any]], single: dict[str, torch.Tensor]) -> list[str]:
    """Bit-identical across ranks, and equal to the single process up to float summation order."""
    first, second = (r["state"] for r in results)
    found = [f"{k} differs across ranks" for k in first if not torch.equal(first[k], second[k])]
    found += [
        f"{k} differs from the single process"
        for k in first
        if not torch.allclose(first[k], single[k], rtol=1e-5, atol=1e-7)
    ]
    return found


def worker_run(
    name: str, spec: str, out: Path, check: Callable[[list[dict[str, Any]]], list[str]]
) -> Outcome:
    """One torchrun job of a worker scenario, checked."""
    outcome = Outcome(f"{name} {spec}")
    started = time.monotonic()
    try:
        proc = sc.run_worker(name, out, spec)
    except subprocess.TimeoutExpired:
        outcome.hang = True
        return outcome
    finally:
        outcome.seconds = time.monotonic() - started
    if proc.returncode != 0:
        outcome.problems.append(f"exit {proc.returncode}: {_tail(proc.stderr)}")
    else:
        outcome.problems += check(sc.load_results(out))
    return outcome


def failure_run(failure: sc.Failure, out: Path) -> Outcome:
    """One rank raises; the job must end quickly, non-zero, naming the error and the rank."""
    outcome = Outcome(f"rank {failure.rank} fails at step {failure.step}")
    started = time.monotonic()
    try:
        proc = sc.run_worker("rank_fails_alone", out, failure.encode())
    except subprocess.TimeoutExpired:
        outcome.hang = True
        return outcome
    finally:
        outcome.seconds = time.monotonic() - started
    ended = time.time()
    marker = out / "failed_at"
    if marker.exists():
        outcome.exit_seconds = ended - float(marker.read_text())
    output = proc.stdout + proc.stderr
    if proc.returncode == 0:
        outcome.problems.append("the job exited 0")
    if f"RankFailure: rank {failure.rank} fails alone" not in output:
        outcome.problems.append(f"the error is not in the output: {_tail(output)}")
    if not re.search(rf"Root Cause.*?rank\s*:\s*{failure.rank}\b", output, re.S):
        outcome.problems.append(f"torchrun does not name rank {failure.rank} as the root cause")
    return outcome


# ------------------------------------------------------------------ killing a rank ---------------
def kill_command(run_dir: Path, corpus: Path) -> list[str]:
    """``torchrun --standalone --nproc-per-node=2 -m sepkit train ...`` (a small run)."""
    return sc.torchrun("-m", *train_args(run_dir, corpus, *KILL_JOB, f"seed={SEED}"))


@dataclass
class Job:
    """A torchrun job writing its output to a file (a pipe nobody reads could fill and block)."""

    command: list[str]
    log: Path
    proc: subprocess.Popen[bytes] = field(init=False)
    _out: IO[bytes] = field(init=False)

    def __post_init__(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._out = self.log.open("wb")
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            self.command, stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT,
            env=env,
        )  # fmt: skip

    def wait(self, timeout: float) -> int | None:
        """Exit status, or None when still running after ``timeout`` (then killed, with workers)."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree(self.proc.pid)
            self.proc.wait(timeout=60.0)
            return None
        finally:
            if self.proc.poll() is not None:
                self._out.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def worker_pids(launcher: int) -> dict[int, int]:
    """``{rank: pid}`` of the training workers under a torchrun process (from their RANK)."""
    found = {}
    for pid in descendants(launcher):
        with contextlib.suppress(OSError):
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            ranks = [e.split(b"=", 1)[1] for e in environ if e.startswith(b"RANK=")]
            if ranks and b"sepkit" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found[int(ranks[0])] = pid
    return found


def _alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped by its parent is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _wait_for_checkpoint(job: Job, run_dir: Path, step: int, timeout: float) -> bool:
    """True once the job has written the checkpoint of ``step`` or a later one (both ranks have
    reached it: a checkpoint ends with a barrier)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and job.proc.poll() is None:
        written = CheckpointManager(run_dir / "checkpoints").list()
        if written and written[-1].step >= step:
            return True
        time.sleep(0.01)
    return False


def kill_run(work: Path, corpus: Path, index: int, rng: random.Random) -> Outcome:
    """Kill one rank of a running job, time the job's end, then resume it with the same command."""
    run_dir = work / f"kill-{index}"
    command = kill_command(run_dir, corpus)
    victim = rng.randrange(sc.WORLD)
    kill_step = rng.choice(KILL_AT_CHECKPOINTS)
    outcome = Outcome(f"kill rank {victim} after step {kill_step}")
    started = time.monotonic()
    job = Job(command, run_dir.parent / f"kill-{index}.out")
    if not _wait_for_checkpoint(job, run_dir, kill_step, JOB_TIMEOUT_S):
        code = job.wait(1.0)
        outcome.problems.append(
            f"no checkpoint of step {kill_step} before the job ended (exit {code})"
        )
        outcome.hang = code is None
        return outcome
    workers = worker_pids(job.proc.pid)
    if sorted(workers) != list(range(sc.WORLD)) or job.proc.poll() is not None:
        job.wait(JOB_TIMEOUT_S)
        outcome.problems.append(f"job ended before the kill (workers found: {workers})")
        return outcome
    killed_at = time.monotonic()
    os.kill(workers[victim], signal.SIGKILL)
    code = job.wait(EXIT_LIMIT_S)
    outcome.exit_seconds = time.monotonic() - killed_at
    outcome.hang = code is None
    time.sleep(0.5)  # torchrun has reaped its workers by now, or left them behind
    left = [pid for pid in workers.values() if _alive(pid)]
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    outcome.problems += _exit_problems(code, job.output(), victim, workers[victim], left)
    outcome.problems += _resume_problems(command, run_dir, index)
    outcome.seconds = time.monotonic() - started
    return outcome


def _exit_problems(
    code: int | None, output: str, victim: int, pid: int, left: list[int]
) -> list[str]:
    """The job must fail (not succeed, not hang), say which rank died of which signal, and leave
    no worker behind."""
    found = []
    if code == 0:
        found.append("the job exited 0 after losing a rank")
    report = re.search(rf"rank\s*:\s*{victim}\b.*?exitcode\s*:\s*-9 \(pid: {pid}\)", output, re.S)
    if code is not None and (report is None or "SIGKILL" not in output):
        found.append(f"torchrun's report does not name rank {victim} and SIGKILL: {_tail(output)}")
    if left:
        found.append(f"workers still running after the job ended: {left}")
    return found


def _resume_problems(command: list[str], run_dir: Path, index: int) -> list[str]:
    """Re-run the unchanged command: it must resume from the newest checkpoint and finish."""
    checkpoints = CheckpointManager(run_dir / "checkpoints").list()
    newest = checkpoints[-1].step if checkpoints else None
    job = Job(command, run_dir.parent / f"kill-{index}-resume.out")
    code = job.wait(JOB_TIMEOUT_S)
    if code != 0:
        return [f"the resumed job {'hung' if code is None else f'exited {code}'}: "
                f"{_tail(job.output())}"]  # fmt: skip
    log = (run_dir / "train.log").read_text(errors="replace")
    found = []
    if f"step {newest})" not in log.split("resumed from")[-1].splitlines()[0]:
        found.append(f"did not resume from the newest checkpoint (step {newest})")
    final = CheckpointManager(run_dir / "checkpoints").list()[-1]
    if final.step != _max_steps():
        found.append(f"finished at step {final.step}, not {_max_steps()}")
    return found


def _max_steps() -> int:
    return int(next(a for a in KILL_JOB if a.startswith("train.max_steps=")).split("=")[1])


def same_as_reference(reference: Path, run_dir: Path) -> bool:
    """Final weights of a killed-and-resumed run bit-identical to the uninterrupted run's."""

    def weights(folder: Path) -> dict[str, torch.Tensor]:
        newest = CheckpointManager(folder / "checkpoints").list()[-1]
        return load_checkpoint(newest.path)["model_state"]

    a, b = weights(reference), weights(run_dir)
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _tail(text: str, lines: int = 6) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


# ------------------------------------------------------------------ figures ----------------------
@dataclass
class Measurement:
    nan: list[Outcome]
    filtered: list[Outcome]
    failures: list[Outcome]
    kills: list[Outcome]
    exact: list[bool] | None  # full form: resumed runs equal to an uninterrupted one


def measure(work: Path, corpus: Path, *, full: bool) -> Measurement:
    size = FULL if full else CI
    nan = []
    for i in range(size.runs):
        fault = nan_variant(i)
        nan.append(worker_run("nan_on_rank", fault.encode(), work / f"nan-{i}",
                              lambda results, f=fault: nan_problems(f, results, f.encode())))  # fmt: skip
    filtered = []
    for i in range(size.runs):
        spec = filtered_variant(i).encode()
        filtered.append(worker_run("rank_all_filtered", spec, work / f"filtered-{i}",
                                   lambda results, s=spec: filtered_problems(results, s)))  # fmt: skip
    failures = [failure_run(failure_variant(i), work / f"fails-{i}") for i in range(size.runs)]
    rng = random.Random(SEED)
    kills = [kill_run(work, corpus, i, rng) for i in range(size.runs)]
    exact = None
    if full:  # one uninterrupted run of the same command: every resumed run must end equal to it
        reference = work / "reference"
        code = Job(kill_command(reference, corpus), work / "reference.out").wait(JOB_TIMEOUT_S)
        exact = [code == 0 and same_as_reference(reference, work / f"kill-{i}") for i in
                 range(size.runs)]  # fmt: skip
    return Measurement(nan, filtered, failures, kills, exact)


def run(work: Path, corpus: Path, *, full: bool) -> list[Figure]:
    return figures(measure(work, corpus, full=full))


def figures(m: Measurement) -> list[Figure]:
    nan, filtered, failures, kills, exact = m.nan, m.filtered, m.failures, m.kills, m.exact
    out = [
        _scenario_figure("NaN/inf on one rank only (input or gradient)", nan),
        _scenario_figure("one rank's examples all filtered", filtered),
        _scenario_figure("one rank raises an error alone", failures),
        _exit_figure("seconds from the error to the end of the job", failures),
        _scenario_figure("one rank SIGKILLed, then the same command re-run", kills),
        _exit_figure("seconds from the kill to the end of the job", kills),
    ]
    if exact is not None:
        out.append(
            Figure(CATEGORY, "resumed runs bit-identical to an uninterrupted run",
                   f"{sum(exact)} / {len(exact)}", "all", all(exact))
        )  # fmt: skip
    seconds = [o.seconds for o in (*nan, *filtered, *failures)]
    out.append(
        Figure(CATEGORY, "seconds per worker job (NaN, filtered, error): median / max",
               f"{statistics.median(seconds):.1f} / {max(seconds):.1f}", "-", True)
    )  # fmt: skip
    return out


def _exit_figure(name: str, outcomes: list[Outcome]) -> Figure:
    times = [o.exit_seconds for o in outcomes if o.exit_seconds is not None and not o.hang]
    measured = len(times) == len(outcomes)
    value = f"{statistics.median(times):.1f} / {max(times):.1f}" if times else "not measured"
    return Figure(CATEGORY, f"{name}: median / max", value, f"max <= {EXIT_REQUIRED_S:.0f}",
                  measured and max(times) <= EXIT_REQUIRED_S)  # fmt: skip


def _scenario_figure(name: str, outcomes: list[Outcome]) -> Figure:
    hangs = sum(o.hang for o in outcomes)
    correct = sum(o.ok for o in outcomes)
    wrong = [
        f"{o.label}: {'hang' if o.hang else '; '.join(o.problems)}" for o in outcomes if not o.ok
    ]
    value = f"{len(outcomes)} runs, {hangs} hangs, {correct} correct"
    if wrong:
        value += " -- " + " || ".join(wrong[:3])
    return Figure(CATEGORY, name, value, "0 hangs, all correct", hangs == 0 and not wrong)
