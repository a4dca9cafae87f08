"""``sepkit.utils.launch.exit_process``: torchrun workers skip finalisation but lose no output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import atexit, logging, sys
from sepkit.utils.launch import exit_process
logging.basicConfig(filename=sys.argv[1], level=logging.INFO)
atexit.register(lambda: print("finalised", file=sys.stderr))
logging.getLogger("run").info("last log line")
print("last words", end="")  # no newline: sits in the stdout buffer
exit_process(3)
"""


@pytest.mark.parametrize("torchrun", [True, False])
def test_exit_process_flushes_and_skips_finalisation_only_in_workers(
    tmp_path: Path, torchrun: bool
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    if torchrun:
        env.update(RANK="1", WORLD_SIZE="2")
    log = tmp_path / "run.log"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(log)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "last words"  # a pipe is block-buffered: flushed by exit_process
    assert "last log line" in log.read_text()
    assert ("finalised" in proc.stderr) is not torchrun, proc.stderr
