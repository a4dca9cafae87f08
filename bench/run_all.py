"""Run every benchmark and rewrite the measured part of docs/benchmarks.md (``make bench``).

Each script runs in its own process (``python bench/<name>.py [--threads N] [--quick]``); its
output (markdown tables and notes) goes into docs/benchmarks.md between the markers
``<!-- bench:begin -->`` and ``<!-- bench:end -->``, under a header giving the machine, the torch
version, the threads, the date and the commands to reproduce. Text outside the markers (the
analysis and the optimisation log) is kept. Scripts that fail are reported in place of their
table and the run goes on; the exit status is 1 if any failed.

    python bench/run_all.py [--quick] [--threads 1] [--only pit_speed,train_step] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


@dataclass(frozen=True)
class Script:
    name: str
    title: str
    goal: str
    threads_flag: bool = True  # accepts --threads
    extra: tuple[str, ...] = ()


SCRIPTS = (
    Script("pit_speed", "1. PIT SI-SNR loss, forward+backward", "sepkit <= best peer at every C"),
    Script("train_step", "2. Full SepFormer training step vs SpeechBrain's recipe", "<= 0.75x"),
    Script(
        "model_speed",
        "2b. SepFormer forward+backward vs SpeechBrain (issue #4), and peak RSS",
        "<= 0.75x",
    ),
    Script("trainer_overhead", "3. Trainer overhead vs a bare PyTorch step", "<= 1.03x"),
    Script("conv_ops", "3b. Conv-TasNet step: sepkit's CPU conv ops vs stock ATen", "< 1x"),
    Script("eval_speed", "4. Test pass scoring vs mir_eval", ">= 20x faster", threads_flag=False),
    Script("data_speed", "5. Data loading vs the training step's consumption", "headroom >= 1x"),
    Script("train_memory", "6. Peak RSS of a training step vs SpeechBrain", "(reported)"),
    Script(
        "streaming",
        "7. Live separation: latency and real-time factor of the causal Conv-TasNet",
        "real-time factor <= 0.1 on one thread, latency <= 20 ms at 8 kHz",
    ),
    Script(
        "threads",
        "Intra-op threads for training on a small machine",
        "(sets the default)",
        extra=("--repeats", "6"),
    ),
)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def header(threads: int, quick: bool, only: list[str] | None) -> str:
    import torch

    flags = " --quick" if quick else ""
    if threads != 1:
        flags += f" --threads {threads}"
    subset = f" --only {','.join(only)}" if only else ""
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            f"Measured {now} on {cpu_name()} ({platform.machine()}, {os.cpu_count()} cores "
            f"visible), Linux {platform.release()}, Python {platform.python_version()}, "
            f"torch {torch.__version__}, {threads} intra-op thread(s) per process"
            + (" — **quick run: too few repeats to quote**" if quick else "")
            + ".",
            "",
            "Reproduce (ratios from one run are the figure; absolute times on a shared machine "
            "are noise):",
            "",
            "```sh",
            "make bench    # = pip install --no-deps -r bench/requirements.txt; "
            "python bench/run_all.py",
            f".venv/bin/python bench/run_all.py{flags}{subset}",
            ".venv/bin/python bench/<name>.py [--threads N] [--quick]    # one row",
            "```",
        ]
    )


def run(script: Script, threads: int, quick: bool) -> tuple[str, float, bool]:
    path = BENCH / f"{script.name}.py"
    if not path.exists():
        return f"*pending: `bench/{script.name}.py` does not exist yet.*", 0.0, True
    cmd = [sys.executable, str(path), *script.extra]
    if quick:
        cmd.append("--quick")
    if script.threads_flag:
        cmd += ["--threads", str(threads)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if threads == 1:  # numpy/scipy BLAS too, for the single-thread comparison
        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    out = proc.stdout.strip()
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        return f"**failed** (exit {proc.returncode}):\n\n```\n{out}\n{tail}\n```", seconds, False
    return out, seconds, True


def as_markdown(output: str) -> str:
    """Markdown tables and short notes go in as they are; anything else in a code block."""
    blocks, current, table = [], [], False
    for line in output.splitlines():
        is_table = line.startswith("|")
        if current and is_table != table:
            blocks.append((table, current))
            current = []
        table = is_table
        current.append(line)
    if current:
        blocks.append((table, current))
    parts = []
    for is_table, lines in blocks:
        text = "\n".join(lines).strip("\n")
        if not text.strip():
            continue
        aligned = any(re.search(r"\S {3,}\S", line) for line in lines)
        parts.append(text if is_table or not aligned else f"```\n{text}\n```")
    return "\n\n".join(parts)


def rewrite(doc: Path, generated: str) -> None:
    block = f"{BEGIN}\n{generated.rstrip()}\n{END}"
    old = doc.read_text() if doc.exists() else ""
    if BEGIN in old and END in old:
        new = old[: old.index(BEGIN)] + block + old[old.index(END) + len(END) :]
    else:
        new = f"# Benchmarks\n\n{block}\n" + (f"\n{old}" if old else "")
    doc.parent.mkdir(parents=True, exist_ok=True)
    tmp = doc.with_suffix(".md.tmp")
    tmp.write_text(new)
    tmp.replace(doc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: every script --quick")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", default="", help="comma-separated script names")
    parser.add_argument("--out", type=Path, default=DOC, help="document to rewrite")
    args = parser.parse_args()
    only = [s for s in args.only.split(",") if s]
    unknown = set(only) - {s.name for s in SCRIPTS}
    if unknown:
        parser.error(f"unknown script(s): {', '.join(sorted(unknown))}")
    sections, ok, total = [], True, 0.0
    for script in SCRIPTS:
        if only and script.name not in only:
            continue
        print(f"== {script.name} ...", flush=True)
        output, seconds, passed = run(script, args.threads, args.quick)
        ok &= passed
        total += seconds
        print(output + f"\n({seconds:.0f} s)\n", flush=True)
        sections.append(
            f"### {script.title}\n\nGoal: {script.goal}. "
            f"`python bench/{script.name}.py` ({seconds:.0f} s)\n\n{as_markdown(output)}"
        )
    generated = "\n\n".join(
        [header(args.threads, args.quick, only), *sections, f"Total: {total / 60:.1f} minutes."]
    )
    rewrite(args.out, generated)
    print(f"wrote {args.out} ({total / 60:.1f} minutes)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
