"""Real ``sepkit train`` processes for the crash and disk-fault scenarios, and what to check on the
run directory they leave.

The scenarios launch the very command a user types (``python -m sepkit train RECIPE --run-dir ...``)
and re-launch it unchanged after every fault, as a user or a cluster scheduler would; everything
they measure comes from the files on disk and the process's own output.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from helpers.processes import kill_tree
from helpers.training import train_args
from sepkit.training.checkpoint import CheckpointError, CheckpointManager, load_checkpoint
from sepkit.utils.io import TEMP_NAME

#: A launch that has not logged its start line after this long is stuck (torch import is ~5 s).
START_TIMEOUT_S = 120.0
#: A launch left to finish must do so within this.
FINISH_TIMEOUT_S = 300.0
#: The line every training start logs to ``train.log``: a resume or a start from scratch.
START_LINE = re.compile(
    r"resumed from (?P<path>\S+) \(epoch \d+, step (?P<step>\d+)\)|no checkpoint in \S+: training"
)


def train_command(run_dir: Path, corpus: Path, *extra: str) -> list[str]:
    """The ``sepkit train`` command line of the scenarios (a small run, no test pass)."""
    return [sys.executable, "-m", *train_args(run_dir, corpus, *extra)]


@dataclass
class Launch:
    """One ``sepkit train`` process; its stdout and stderr are copied to ``logs/<name>.out``.

    Through a pipe, not by handing the process the file: a fault injected into the process's own
    writes (a file-size limit) must not swallow the error message it prints.
    """

    command: list[str]
    logs: Path
    name: str
    proc: subprocess.Popen[bytes] = field(init=False)
    _copier: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        self._copier = threading.Thread(target=self._copy_output, daemon=True)
        self._copier.start()

    @property
    def log_file(self) -> Path:
        return self.logs / f"{self.name}.out"

    def _copy_output(self) -> None:
        assert self.proc.stdout is not None
        pipe = self.proc.stdout.fileno()
        with self.log_file.open("wb") as out:
            while chunk := os.read(pipe, 65536):
                out.write(chunk)
                out.flush()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the process (and any child), as a preempted machine would, and reap it.

        The process itself first and directly: listing descendants reads all of /proc, which
        takes longer than a checkpoint write this kill may be aimed at.
        """
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        kill_tree(self.proc.pid)
        self.wait(60.0)

    def wait(self, timeout: float = FINISH_TIMEOUT_S) -> int:
        """Exit status; a process still running after ``timeout`` is killed and reported as -9."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree(self.proc.pid)
            code = self.proc.wait(timeout=60.0)
        self._copier.join(timeout=60.0)
        if self.proc.stdout is not None and not self._copier.is_alive():
            self.proc.stdout.close()
        return code

    def output(self) -> str:
        """What the process printed so far (all of it once :meth:`wait` returned)."""
        if not self.log_file.exists():
            return ""
        return self.log_file.read_text(errors="replace")


def run_to_end(command: list[str], logs: Path, name: str) -> tuple[int, str]:
    """Run a launch to completion; (exit status, output)."""
    launch = Launch(command, logs, name)
    code = launch.wait()
    return code, launch.output()


def start_lines(run_dir: Path) -> list[re.Match[str]]:
    """Every start line in ``train.log`` so far (one per launch that got that far)."""
    log = run_dir / "train.log"
    if not log.exists():
        return []
    return [m for m in map(START_LINE.search, log.read_text(errors="replace").splitlines()) if m]


def wait_for_start(launch: Launch, run_dir: Path, seen: int) -> re.Match[str] | None:
    """Wait until ``train.log`` holds more than ``seen`` start lines: the new launch has restored
    its checkpoint (or found none) and is about to train. None if it died or hung first."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        lines = start_lines(run_dir)
        if len(lines) > seen:
            return lines[seen]
        if not launch.alive():
            return None
        time.sleep(0.005)
    return None


def newest_step(run_dir: Path) -> int | None:
    """Step of the newest ``ckpt-*.pt`` on disk, if any."""
    found = CheckpointManager(run_dir / "checkpoints").list()
    return found[-1].step if found else None


def temp_files(run_dir: Path) -> list[Path]:
    """Temporary files of interrupted atomic writes in the run directory and its checkpoints."""
    found = []
    for folder in (run_dir, run_dir / "checkpoints"):
        if folder.is_dir():
            found += [p for p in folder.iterdir() if is_temp_name(p.name)]
    return sorted(found)


def is_temp_name(name: str) -> bool:
    """``atomic_open``'s temporary names, and the checkpoint manager's ``best.pt`` link in flight."""
    return bool(TEMP_NAME.match(name)) or name == ".best.pt.tmp"


@dataclass
class CheckpointHealth:
    """What a run directory's checkpoints look like right now."""

    files: int  # ckpt-*.pt
    unloadable: list[str]  # ckpt-*.pt or best.pt that fail to load
    corrupt: list[str]  # *.corrupt files (resume found an unreadable newest checkpoint)
    index_problems: list[str]  # index.json / best.pt disagreeing with the files

    @property
    def bad(self) -> int:
        return len(self.unloadable) + len(self.corrupt)


def checkpoint_health(run_dir: Path, *, check_index: bool = True) -> CheckpointHealth:
    """Load every checkpoint; compare ``index.json`` and ``best.pt`` with the files."""
    folder = run_dir / "checkpoints"
    infos = CheckpointManager(folder).list()
    paths = [c.path for c in infos]
    if (folder / "best.pt").exists():
        paths.append(folder / "best.pt")
    unloadable = []
    for path in paths:
        try:
            load_checkpoint(path)
        except CheckpointError as err:
            unloadable.append(f"{path.name}: {err}")
    corrupt = sorted(p.name for p in folder.glob("*.corrupt")) if folder.is_dir() else []
    problems = index_problems(folder) if check_index and infos else []
    return CheckpointHealth(len(infos), unloadable, corrupt, problems)


def index_problems(folder: Path) -> list[str]:
    """Ways ``index.json`` and ``best.pt`` disagree with the checkpoint files themselves."""
    problems = []
    try:
        index = json.loads((folder / "index.json").read_text())
    except (OSError, ValueError) as err:
        return [f"index.json unreadable: {err}"]
    files = {c.path.name: c for c in CheckpointManager(folder).list()}
    listed = index.get("valid_loss", {})
    if set(listed) != set(files):
        problems.append(f"index lists {sorted(listed)}, disk has {sorted(files)}")
    for name in set(listed) & set(files):
        stored = load_checkpoint(files[name].path).get("valid_loss")
        if stored != listed[name]:
            problems.append(f"{name}: index says valid loss {listed[name]}, file says {stored}")
    scored = [(v, -files[k].step, k) for k, v in listed.items() if v is not None and k in files]
    best = min(scored)[2] if scored else None
    if index.get("best") != best:
        problems.append(f"index best {index.get('best')}, expected {best}")
    if best is not None and not same_file(folder / "best.pt", folder / best):
        problems.append(f"best.pt is not {best}")
    return problems


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` is ``b``: the same inode (a hard link) or, where links fail, a copy."""
    if not (a.exists() and b.exists()):
        return False
    return os.path.samefile(a, b) or a.read_bytes() == b.read_bytes()


def final_state(run_dir: Path) -> dict[str, Any]:
    """Payload of the newest checkpoint."""
    infos = CheckpointManager(run_dir / "checkpoints").list()
    if not infos:
        raise AssertionError(f"{run_dir}: no checkpoint")
    return load_checkpoint(infos[-1].path)


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    """Names of tensors that are not bit-identical (or missing on one side)."""
    differ = sorted(set(a) ^ set(b))
    differ += [name for name in sorted(set(a) & set(b)) if not torch.equal(a[name], b[name])]
    return differ


def csv_rows(path: Path, drop: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Rows of a CSV log without the named (timing) columns."""
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return [tuple(v for k, v in row.items() if k not in drop) for row in csv.DictReader(handle)]


def duplicate_steps(path: Path) -> int:
    """Rows of ``metrics.csv`` whose step occurs more than once."""
    with contextlib.suppress(FileNotFoundError), path.open(newline="") as handle:
        counts = Counter(row["step"] for row in csv.DictReader(handle))
        return sum(n - 1 for n in counts.values() if n > 1)
    return 0


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("sepkit: error:")]


def has_traceback(output: str) -> bool:
    return "Traceback (most recent call last)" in output or "--- Logging error ---" in output
