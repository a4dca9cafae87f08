"""Disk faults: the checkpoint directory (or the whole run directory) fills up or turns read-only
under a real ``sepkit train``; then the fault is cleared and the same command is run again.

Each case starts the run, waits until it has written its first checkpoint(s), freezes the process
(SIGSTOP, so the fault lands at a known point and not after the run has ended), injects the fault,
lets it go on (SIGCONT), and waits for it to stop. Mechanisms, real wherever the machine allows:

* **full**: a small tmpfs mounted on the directory and filled to the last byte by a filler file
  (needs ``mount``: root, or CAP_SYS_ADMIN); elsewhere ``RLIMIT_FSIZE`` set on the running process
  with ``prlimit`` (Python ignores SIGXFSZ, so an oversized write fails with ``EFBIG``): every
  write past the limit fails, as on a full disk, though the file system itself is fine;
* **read-only**: the tmpfs remounted ``ro`` (retried while a write holds a file open, which makes
  the kernel refuse); as a non-root user, ``chmod 555`` on the directory (root ignores modes,
  so as root without ``mount`` the case is skipped, with that reason).

What must hold, per case (each is a figure): training stops with a clear error (exit status not 0,
a ``sepkit: error:`` line naming the directory and the cause, no traceback); the last good
checkpoint is intact (every checkpoint and ``best.pt`` load, no temporary or half-written file is
left); once the fault is cleared (filler removed, remounted ``rw``, mode restored, or simply a new
process without the limit), the same command resumes from that checkpoint and finishes; afterwards
``index.json`` and ``best.pt`` agree with the files and ``metrics.csv`` holds every step once (a
full disk can cut its last row short).
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from helpers.faults import Figure
from helpers.faults.train_runs import (
    FINISH_TIMEOUT_S,
    START_TIMEOUT_S,
    Launch,
    checkpoint_health,
    csv_rows,
    error_lines,
    final_state,
    has_traceback,
    newest_step,
    start_lines,
    temp_files,
    train_command,
)
from sepkit.training.checkpoint import CheckpointManager

CATEGORY = "disk"
EPOCHS = 3
STEPS_PER_EPOCH = 12  # 24 training utterances, batches of 2
OVERRIDES = (
    f"train.epochs={EPOCHS}",
    "train.checkpoint_every_steps=3",
    "train.log_every=5",
    "seed=5",
)
#: Room for the tiny model's checkpoints (~110 KB each; latest + best 2 + one being written).
TMPFS_KIB = 2048
#: RLIMIT_FSIZE for a full checkpoint directory: below a checkpoint's size, above the logs'.
CHECKPOINT_FSIZE_LIMIT = 64 * 1024
#: A launch hit by a fault must stop within this.
FAULT_TIMEOUT_S = 120.0
CHECKPOINT_TEMP = re.compile(r"^\.ckpt-\d+\.pt\.[a-z0-9_]{8}\.tmp$")

TMPFS, RLIMIT, REMOUNT, CHMOD = "tmpfs", "RLIMIT_FSIZE", "remount ro", "chmod 555"
#: What the error message must say, per mechanism (the operating system's words).
CAUSES = {
    TMPFS: "No space left on device",
    RLIMIT: "File too large",
    REMOUNT: "Read-only file system",
    CHMOD: "Permission denied",
}


# ---- cases -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One disk fault: what happens (``full``/``read-only``), where, by which mechanism, when."""

    title: str
    fault: str  # "full" | "read-only"
    place: str  # "checkpoints" (RUN_DIR/checkpoints) | "run" (all of RUN_DIR)
    mechanism: str | None  # None: not possible on this machine (see skip_reason)
    after: int = 1  # checkpoints written before the fault
    during_write: bool = False  # the fault strikes while a checkpoint is being written
    skip_reason: str = ""

    @property
    def label(self) -> str:
        when = f"after checkpoint {self.after}" + (", mid-write" if self.during_write else "")
        return f"{self.title} ({self.mechanism}, {when})"

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.label.lower()).strip("-")


@dataclass(frozen=True)
class Mechanisms:
    """Which fault mechanisms this machine offers (a reason string where one is missing)."""

    tmpfs: str  # "" if mounting a tmpfs works
    rlimit: str
    chmod: str

    @property
    def full(self) -> list[str]:
        return [m for m, why in ((TMPFS, self.tmpfs), (RLIMIT, self.rlimit)) if not why]

    @property
    def read_only(self) -> list[str]:
        return [m for m, why in ((REMOUNT, self.tmpfs), (CHMOD, self.chmod)) if not why]

    def best(self, fault: str) -> tuple[str | None, str]:
        """The most real mechanism for ``fault`` ("full" | "read-only"), or None and why."""
        offered = self.full if fault == "full" else self.read_only
        if offered:
            return offered[0], ""
        reasons = (self.tmpfs, self.rlimit) if fault == "full" else (self.tmpfs, self.chmod)
        return None, f"no way to make a directory {fault} here: " + "; ".join(reasons)


def probe(work: Path) -> Mechanisms:
    """Try each mechanism once on a scratch directory."""
    point = work / "probe-mount"
    point.mkdir(parents=True, exist_ok=True)
    tmpfs = ""
    try:
        mount_tmpfs(point, 64)
        unmount(point)
    except (OSError, subprocess.SubprocessError) as err:
        tmpfs = f"cannot mount a tmpfs ({err})"
    rlimit = "" if hasattr(resource, "prlimit") else "no prlimit(2) on this platform"
    chmod = "running as root, which ignores directory modes" if os.geteuid() == 0 else ""
    return Mechanisms(tmpfs, rlimit, chmod)


def checkpoints_full(
    mechanism: str | None, after: int = 1, during_write: bool = False, skip_reason: str = ""
) -> Case:
    title = "checkpoint directory full"
    return Case(title, "full", "checkpoints", mechanism, after, during_write, skip_reason)


def checkpoints_read_only(mechanism: str | None, after: int = 1, skip_reason: str = "") -> Case:
    title = "checkpoint directory read-only"
    return Case(title, "read-only", "checkpoints", mechanism, after, skip_reason=skip_reason)


def run_dir_full(mechanism: str | None, after: int = 1, skip_reason: str = "") -> Case:
    title = "run directory full (metrics.csv, train.log, checkpoints)"
    return Case(title, "full", "run", mechanism, after, skip_reason=skip_reason)


def ci_cases(available: Mechanisms) -> list[Case]:
    """One case per fault, with the most real mechanism available."""
    full, not_full = available.best("full")
    read_only, not_read_only = available.best("read-only")
    return [
        checkpoints_full(full, skip_reason=not_full),
        checkpoints_read_only(read_only, skip_reason=not_read_only),
        run_dir_full(full, skip_reason=not_full),
    ]


def full_cases(available: Mechanisms) -> list[Case]:
    """Every mechanism available, the fault after the first and after the third checkpoint, and
    (full disk) while a checkpoint is being written."""
    cases = [c for c in ci_cases(available) if c.mechanism is None]  # the skips, reported
    for mechanism in available.full:
        for after in (1, 3):
            cases += [checkpoints_full(mechanism, after), run_dir_full(mechanism, after)]
        cases.append(checkpoints_full(mechanism, 2, during_write=True))
    for mechanism in available.read_only:
        cases += [checkpoints_read_only(mechanism, after) for after in (1, 3)]
    return cases


def run(work: Path, corpus: Path, *, full: bool) -> list[Figure]:
    available = probe(work)
    figures: list[Figure] = []
    for case in full_cases(available) if full else ci_cases(available):
        figures += run_case(work, corpus, case)
    return figures


# ---- mechanisms --------------------------------------------------------------------------------
def mount_tmpfs(point: Path, size_kib: int) -> None:
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "tmpfs", str(point)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip


def unmount(point: Path) -> None:
    """Unmount; lazily if something still holds it (the scratch folder must not stay mounted)."""
    done = subprocess.run(["umount", str(point)], capture_output=True, timeout=30)
    if done.returncode != 0:
        subprocess.run(["umount", "-l", str(point)], capture_output=True, timeout=30)


@contextlib.contextmanager
def tmpfs(point: Path, size_kib: int = TMPFS_KIB) -> Iterator[Path]:
    """A tmpfs on ``point`` for the duration; always unmounted."""
    point.mkdir(parents=True, exist_ok=True)
    mount_tmpfs(point, size_kib)
    try:
        yield point
    finally:
        unmount(point)


class Fault(Protocol):
    def inject(self, pid: int) -> None: ...

    def clear(self) -> None: ...


@dataclass
class FillUp:
    """Fill a (tmpfs) directory's file system to the last byte with a filler file."""

    folder: Path

    @property
    def filler(self) -> Path:
        return self.folder / "disk-filler.bin"

    def inject(self, pid: int) -> None:
        with self.filler.open("wb", buffering=0) as handle:
            for block in (1 << 20, 4096, 1):
                with contextlib.suppress(OSError):
                    while handle.write(b"\0" * block):
                        pass
        stats = os.statvfs(self.folder)
        assert stats.f_bavail == 0, f"{self.folder}: {stats.f_bavail} blocks still free"

    def clear(self) -> None:
        self.filler.unlink()


@dataclass
class FileSizeLimit:
    """``RLIMIT_FSIZE`` on the running process: writes past ``limit`` bytes fail (EFBIG)."""

    limit: int

    def inject(self, pid: int) -> None:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (self.limit, self.limit))

    def clear(self) -> None:
        """Nothing to undo: the limit dies with the process; the next one starts without it."""


@dataclass
class RemountReadOnly:
    """Remount a tmpfs read-only (and back)."""

    point: Path

    def inject(self, pid: int) -> None:
        deadline = time.monotonic() + 30.0
        while True:
            done = subprocess.run(
                ["mount", "-o", "remount,ro", str(self.point)], capture_output=True, timeout=30
            )
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"remount,ro {self.point}: {done.stderr.decode().strip()}")
            # EBUSY: a file is open for writing (a checkpoint in flight). Let it finish.
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.003)
            stop(pid)

    def clear(self) -> None:
        subprocess.run(
            ["mount", "-o", "remount,rw", str(self.point)], check=True, capture_output=True,
            timeout=30,
        )  # fmt: skip


@dataclass
class ReadOnlyMode:
    """``chmod 555`` on a directory (and back): real only for a user other than root."""

    folder: Path

    def inject(self, pid: int) -> None:
        self.folder.chmod(0o555)

    def clear(self) -> None:
        self.folder.chmod(0o755)


@contextlib.contextmanager
def fault_for(case: Case, run_dir: Path) -> Iterator[Fault]:
    """Prepare the case's directory (mounting a tmpfs if needed) and yield its fault."""
    folder = run_dir / "checkpoints" if case.place == "checkpoints" else run_dir
    folder.mkdir(parents=True, exist_ok=True)
    if case.mechanism in (TMPFS, REMOUNT):
        with tmpfs(folder):
            yield FillUp(folder) if case.mechanism == TMPFS else RemountReadOnly(folder)
        return
    if case.mechanism == RLIMIT:
        yield FileSizeLimit(CHECKPOINT_FSIZE_LIMIT if case.place == "checkpoints" else 1)
        return
    if case.mechanism == CHMOD:
        fault = ReadOnlyMode(folder)
        try:
            yield fault
        finally:
            fault.clear()
        return
    raise ValueError(f"unknown mechanism {case.mechanism}")


def stop(pid: int) -> None:
    """SIGSTOP ``pid`` and wait until it is stopped."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state in ("T", "t", "Z"):
                return
        time.sleep(0.001)


# ---- one case ----------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What the faulty launch and the resumed one did."""

    injected: str = ""  # why the fault could not be injected, if so
    code: int | None = None
    output: str = ""
    first_step: int | None = None  # the first checkpoint seen before the fault
    newest_after_fault: int | None = None
    resume_code: int | None = None
    resume_output: str = ""
    resumed_from: int | None = None


def run_case(work: Path, corpus: Path, case: Case) -> list[Figure]:
    """Fault, check, clear, resume, check: the figures of one case."""
    if case.mechanism is None:
        return [Figure(CATEGORY, case.title, f"skipped: {case.skip_reason}", "yes", True)]
    run_dir = work / case.slug
    logs = work / "logs"
    command = train_command(run_dir, corpus, *OVERRIDES)
    outcome = Outcome()
    with fault_for(case, run_dir) as fault:
        launch = Launch(command, logs, f"{case.slug}-fault")
        try:
            outcome.injected, outcome.first_step = inject_when_due(launch, run_dir, case, fault)
            outcome.code = launch.wait(FAULT_TIMEOUT_S)
        finally:
            if launch.alive():
                launch.kill()
        outcome.output = launch.output()
        after_fault = checkpoint_health(run_dir, check_index=False)
        left_over = temp_files(run_dir)
        outcome.newest_after_fault = newest_step(run_dir)
        fault.clear()
        resume(command, run_dir, logs, case, outcome)
        return figures(case, run_dir, outcome, after_fault.bad, after_fault.files, left_over)


def inject_when_due(
    launch: Launch, run_dir: Path, case: Case, fault: Fault
) -> tuple[str, int | None]:
    """Wait for ``case.after`` checkpoints (and a write in flight, if asked), freeze the process,
    inject, let it go. Returns (a problem, or ""; the first checkpoint step seen)."""
    folder = run_dir / "checkpoints"
    seen: set[int] = set()
    deadline = time.monotonic() + START_TIMEOUT_S
    while len(seen) < case.after:
        if not launch.alive() or time.monotonic() > deadline:
            return f"only {len(seen)} checkpoint(s) before the run ended", min(seen, default=None)
        seen |= {c.step for c in CheckpointManager(folder).list()}
        time.sleep(0.002)
    while case.during_write and launch.alive():
        with contextlib.suppress(FileNotFoundError):
            if any(CHECKPOINT_TEMP.match(entry.name) for entry in os.scandir(folder)):
                break
    if not launch.alive():
        return "the run ended before the fault", min(seen)
    stop(launch.proc.pid)
    try:
        fault.inject(launch.proc.pid)
    finally:
        os.kill(launch.proc.pid, signal.SIGCONT)
    return "", min(seen)


def resume(command: list[str], run_dir: Path, logs: Path, case: Case, outcome: Outcome) -> None:
    """The same command again, once the fault is cleared; it must finish."""
    seen = len(start_lines(run_dir))
    launch = Launch(command, logs, f"{case.slug}-resume")
    outcome.resume_code = launch.wait(FINISH_TIMEOUT_S)
    outcome.resume_output = launch.output()
    lines = start_lines(run_dir)
    if len(lines) > seen and lines[seen]["step"] is not None:
        outcome.resumed_from = int(lines[seen]["step"])


# ---- figures -----------------------------------------------------------------------------------
def figures(
    case: Case,
    run_dir: Path,
    outcome: Outcome,
    bad_after_fault: int,
    files_after_fault: int,
    left_over: list[Path],
) -> list[Figure]:
    def figure(name: str, value: str, requirement: str, ok: bool) -> Figure:
        return Figure(CATEGORY, f"{case.label}: {name}", value, requirement, ok)

    clear, why = clear_error(case, run_dir, outcome)
    newest = outcome.newest_after_fault
    intact = (
        files_after_fault > 0 and bad_after_fault == 0 and not left_over
        and newest is not None and outcome.first_step is not None and newest >= outcome.first_step
    )  # fmt: skip
    intact_value = (
        f"yes (ckpt-{newest:09d}.pt loads; no temp or partial file)"
        if intact and newest is not None
        else f"no: {files_after_fault} file(s), {bad_after_fault} unloadable, left {left_over}"
    )
    resumed, resumed_value = resumed_and_finished(outcome)
    consistent, consistent_value = consistent_after(run_dir)
    return [
        figure("stops with a clear error", "yes" if clear else f"no: {why}",
               "exit != 0, 'sepkit: error:' naming the path and cause, no traceback", clear),
        figure("last good checkpoint intact", intact_value, "yes", intact),
        figure("same command resumes from it once the fault is cleared, and finishes",
               resumed_value, "yes", resumed),
        figure("index.json, best.pt and metrics.csv consistent afterwards", consistent_value,
               "yes", consistent),
    ]  # fmt: skip


def clear_error(case: Case, run_dir: Path, outcome: Outcome) -> tuple[bool, str]:
    """Whether the faulty launch stopped with one clear message (and why not)."""
    if outcome.injected:
        return False, f"fault not injected: {outcome.injected}"
    if outcome.code in (0, None):
        return False, f"exit status {outcome.code}"
    if has_traceback(outcome.output):
        return False, "a traceback was printed:\n" + outcome.output[-2000:]
    where = str(run_dir / "checkpoints") if case.place == "checkpoints" else str(run_dir)
    cause = CAUSES[case.mechanism or ""]
    lines = error_lines(outcome.output)
    if not any(where in line and cause in line for line in lines):
        return (
            False,
            f"no error line naming {where} and {cause!r}: {lines or outcome.output[-800:]}",
        )
    return True, ""


def resumed_and_finished(outcome: Outcome) -> tuple[bool, str]:
    total = EPOCHS * STEPS_PER_EPOCH
    if outcome.resume_code != 0 or has_traceback(outcome.resume_output):
        return False, f"no: exit {outcome.resume_code}: {outcome.resume_output[-1500:]}"
    if outcome.resumed_from is None or outcome.resumed_from != outcome.newest_after_fault:
        return (
            False,
            f"no: resumed from {outcome.resumed_from}, newest was {outcome.newest_after_fault}",
        )
    return True, f"yes (from step {outcome.resumed_from} to {total})"


def consistent_after(run_dir: Path) -> tuple[bool, str]:
    total = EPOCHS * STEPS_PER_EPOCH
    problems = list(checkpoint_health(run_dir).index_problems)
    if temp_files(run_dir):
        problems.append(f"temp files left: {temp_files(run_dir)}")
    steps = [int(row[0]) for row in csv_rows(run_dir / "metrics.csv")]
    if steps != list(range(1, total + 1)):
        problems.append(f"metrics.csv steps {steps[:3]}...{steps[-3:]} ({len(steps)} rows)")
    with contextlib.suppress(AssertionError):
        if final_state(run_dir)["trainer"]["step"] != total:
            problems.append("the newest checkpoint is not the last step")
    return not problems, "yes" if not problems else "no: " + "; ".join(problems)
