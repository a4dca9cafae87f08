"""Crashes: SIGKILL a real ``sepkit train`` at random moments and restart it with the same command.

A run of the demo recipe's small Conv-TasNet on the test corpus, checkpointing every 3 steps, is
killed :attr:`Size.kills` times, each launch restarted with the unchanged command line, then left
to finish. Every second kill, starting with the first, is aimed at a checkpoint write: the
checkpoint directory is polled without pause for the temporary file of ``atomic_open``
(``.ckpt-*.tmp``) and the process is SIGKILLed the moment one appears (the first kill at the run's
very first checkpoint write: metrics rows are on disk, no checkpoint is, and the restart must start
cleanly from step 0; later ones at the 1st to 3rd write of their launch); whether the kill really
landed mid-write is read afterwards from the temporary file the dead process left behind. The
other kills fall at a seeded-random moment within :data:`KILL_WINDOW_S` after the launch restored
its checkpoint (training steps, metrics flushes, validation, index and ``best.pt`` updates,
pruning).

What must hold (each is a figure):

* after every kill, every checkpoint on disk (and ``best.pt``) loads, and no ``*.corrupt`` file
  appears: a kill cannot produce a half-written checkpoint;
* every restart resumes from the newest checkpoint on disk (``train.log``'s ``resumed from`` line
  names its step);
* temporary files a kill leaves are deleted by the next start (they hold nothing recoverable: the
  rename that would have published them never happened; left alone they pile up, one checkpoint's
  worth per crash);
* the final weights are bit-identical to an uninterrupted run with the same seed (data order and
  RNG states are restored exactly), ``metrics.csv`` and ``valid.csv`` equal the uninterrupted run's
  row for row (timings aside; no step twice), and ``index.json``/``best.pt`` agree with the files.
"""

from __future__ import annotations

import os
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from helpers.faults import Figure
from helpers.faults.train_runs import (
    START_TIMEOUT_S,
    Launch,
    checkpoint_health,
    csv_rows,
    duplicate_steps,
    final_state,
    has_traceback,
    newest_step,
    run_to_end,
    same_weights,
    start_lines,
    temp_files,
    train_command,
    wait_for_start,
)

CATEGORY = "crashes"
SEED = 1234
#: Random kills fall uniformly within this many seconds after a launch logged its start line: a
#: few dozen steps of the tiny model, so every launch has a good chance to pass a checkpoint.
KILL_WINDOW_S = 0.8
#: A kill aimed at a checkpoint write waits for the 1st..Nth write of its launch (progress).
MAX_WRITES_BEFORE_KILL = 3
#: The temporary file of a checkpoint being written (``atomic_open``: ``.<name>.<random>.tmp``).
CHECKPOINT_TEMP = re.compile(r"^\.ckpt-\d+\.pt\.[a-z0-9_]{8}\.tmp$")


@dataclass(frozen=True)
class Size:
    kills: int
    epochs: int  # 12 steps each; long enough that the kills do not reach the end of the run


CI = Size(kills=3, epochs=6)
FULL = Size(kills=20, epochs=40)


def overrides(size: Size) -> tuple[str, ...]:
    return (
        f"train.epochs={size.epochs}",
        "train.checkpoint_every_steps=3",
        "train.log_every=5",  # metrics.csv flushes between checkpoints too: rows to drop on resume
        "seed=3",
    )


@dataclass
class Tally:
    """What the kill campaign observed."""

    kills: int = 0
    aimed_at_write: int = 0
    landed_in_write: int = 0
    restarts: int = 0
    resumed_right: int = 0
    temp_left: int = 0
    temp_removed: int = 0
    bad_checkpoints: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # a launch that died or hung on its own


def run(work: Path, corpus: Path, *, full: bool) -> list[Figure]:
    size = FULL if full else CI
    logs = work / "logs"
    reference_dir, killed_dir = work / "reference", work / "killed"
    code, output = run_to_end(
        train_command(reference_dir, corpus, *overrides(size)), logs, "reference"
    )
    if code != 0:
        raise RuntimeError(f"the uninterrupted reference run failed ({code}):\n{output[-3000:]}")
    command = train_command(killed_dir, corpus, *overrides(size))
    tally = Tally()
    kill_campaign(command, killed_dir, logs, size, random.Random(SEED), tally)
    final_code, final_output = finish(command, killed_dir, logs, tally)
    return figures(size, tally, reference_dir, killed_dir, final_code, final_output)


# ---- the campaign ------------------------------------------------------------------------------
def kill_campaign(
    command: list[str], run_dir: Path, logs: Path, size: Size, rng: random.Random, tally: Tally
) -> None:
    """Launch, wait for the start line, kill; ``size.kills`` times."""
    for attempt in range(size.kills):
        aim_at_write = attempt % 2 == 0
        launch = restart(command, run_dir, logs, f"launch-{attempt:02d}", tally)
        try:
            if launch is None:
                continue
            before = set(temp_files(run_dir))
            killed = False
            if aim_at_write:
                tally.aimed_at_write += 1
                # The very first kill hits the run's first checkpoint write: metrics rows are on
                # disk, no checkpoint is; the restart must start cleanly from step 0.
                wanted = 1 if attempt == 0 else rng.randint(1, MAX_WRITES_BEFORE_KILL)
                killed = kill_during_write(launch, run_dir / "checkpoints", wanted)
            else:
                time.sleep(rng.uniform(0.0, KILL_WINDOW_S))
            if not killed:
                if not launch.alive():
                    tally.problems.append(f"launch {attempt} ended before its kill: lengthen it")
                    continue
                launch.kill()
            tally.kills += 1
            left = [p for p in temp_files(run_dir) if p not in before]
            tally.landed_in_write += any(CHECKPOINT_TEMP.match(p.name) for p in left)
            health = checkpoint_health(run_dir, check_index=False)  # repaired on restart
            tally.bad_checkpoints += [f"after kill {attempt}: {b}" for b in health.unloadable]
            tally.bad_checkpoints += [f"after kill {attempt}: {c}" for c in health.corrupt]
        finally:
            if launch is not None and launch.alive():
                launch.kill()


def restart(
    command: list[str], run_dir: Path, logs: Path, name: str, tally: Tally
) -> Launch | None:
    """Launch the same command; check that it resumes from the newest checkpoint on disk and
    deletes the temporary files the previous kill left. None if it never got to training."""
    expected = newest_step(run_dir)
    left_over = temp_files(run_dir)
    seen = len(start_lines(run_dir))
    launch = Launch(command, logs, name)
    start = wait_for_start(launch, run_dir, seen)
    if start is None:
        launch.kill()
        tally.problems.append(f"{name} did not start within {START_TIMEOUT_S:.0f} s")
        return None
    if seen:  # not the first launch: a restart after a kill
        tally.restarts += 1
        resumed = int(start["step"]) if start["step"] is not None else None
        tally.resumed_right += resumed == expected
    tally.temp_left += len(left_over)
    tally.temp_removed += sum(not p.exists() for p in left_over)
    return launch


def kill_during_write(launch: Launch, folder: Path, wanted: int) -> bool:
    """SIGKILL the launch while its ``wanted``-th checkpoint write has its temporary file open.

    Polls the directory in a tight loop (tens of microseconds a pass): a checkpoint write of the
    tiny model lasts about a millisecond (serialising, writing, fsync). Returns whether it killed
    (False: the launch ended or no write came within a minute).
    """
    deadline = time.monotonic() + 60.0
    writes, writing = 0, False
    while launch.alive() and time.monotonic() < deadline:
        try:
            now = any(CHECKPOINT_TEMP.match(entry.name) for entry in os.scandir(folder))
        except FileNotFoundError:  # no checkpoint written yet
            now = False
        if now and not writing:
            writes += 1
            if writes >= wanted:
                launch.kill()
                return True
        writing = now
    return False


def finish(command: list[str], run_dir: Path, logs: Path, tally: Tally) -> tuple[int | None, str]:
    """The last restart, left to run to the end."""
    launch = restart(command, run_dir, logs, "launch-final", tally)
    if launch is None:
        return None, ""
    code = launch.wait()
    return code, launch.output()


# ---- the figures -------------------------------------------------------------------------------
def figures(
    size: Size,
    tally: Tally,
    reference_dir: Path,
    killed_dir: Path,
    code: int | None,
    output: str,
) -> list[Figure]:
    finished = code == 0 and not has_traceback(output)
    weights_differ = ["(the last launch failed)"]
    steps = (None, None)
    if finished:
        reference, resumed = final_state(reference_dir), final_state(killed_dir)
        weights_differ = same_weights(reference["model_state"], resumed["model_state"])
        steps = (reference["trainer"]["step"], resumed["trainer"]["step"])
    logs_equal = all(
        csv_rows(reference_dir / name, drop=("seconds",))
        == csv_rows(killed_dir / name, drop=("seconds",))
        for name in ("metrics.csv", "valid.csv")
    )
    health = checkpoint_health(killed_dir)
    duplicates = duplicate_steps(killed_dir / "metrics.csv")
    stray = temp_files(killed_dir)

    def figure(name: str, value: str, requirement: str, ok: bool) -> Figure:
        return Figure(CATEGORY, name, value, requirement, ok)

    return [
        figure("SIGKILLs (restart with the same command after each)", str(tally.kills),
               str(size.kills), tally.kills == size.kills),
        figure("kills that landed during a checkpoint write (its temp file left behind)",
               f"{tally.landed_in_write} (of {tally.aimed_at_write} aimed at one)", ">= 1",
               tally.landed_in_write >= 1),
        figure("restarts that resumed from the newest checkpoint on disk",
               f"{tally.resumed_right} / {tally.restarts}", "all",
               tally.restarts == size.kills and tally.resumed_right == tally.restarts),
        figure("corrupt or unloadable checkpoints found after a kill",
               str(len(tally.bad_checkpoints)), "0", not tally.bad_checkpoints),
        figure("temp files left by kills, deleted by the next start",
               f"{tally.temp_removed} / {tally.temp_left}", "all",
               tally.temp_removed == tally.temp_left and not stray),
        figure("last launch finished (exit 0, no traceback)", "yes" if finished else f"no ({code})",
               "yes", finished),
        figure("final weights bit-identical to an uninterrupted run (same seed)",
               "yes" if not weights_differ else f"no: {', '.join(weights_differ[:3])}", "yes",
               not weights_differ and steps[0] == steps[1]),
        figure("duplicate steps in metrics.csv", str(duplicates), "0", duplicates == 0),
        figure("metrics.csv and valid.csv equal the uninterrupted run's (timings aside)",
               "yes" if logs_equal else "no", "yes", logs_equal),
        figure("index.json and best.pt agree with the checkpoint files at the end",
               "yes" if not health.index_problems else "; ".join(health.index_problems), "yes",
               not health.index_problems and health.bad == 0),
        figure("launches that died or hung on their own", str(len(tally.problems)),
               "0", not tally.problems),
    ]  # fmt: skip
