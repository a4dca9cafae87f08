"""How this process was started and how it leaves, read from the environment alone (no torch
import: the CLI asks on its way out, and ``sepkit --help`` should not pay for loading torch)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import NoReturn


def launched_by_torchrun() -> bool:
    """A worker of a multi-process torchrun job (``RANK`` set, ``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def exit_process(code: int) -> NoReturn:
    """Exit with ``code``; a torchrun worker leaves through ``os._exit`` after flushing.

    Skipping the interpreter's finalisation means no gloo C++ object is torn down after Python's
    own teardown has begun. A rare abort at the very end of finished two-rank jobs (SIGABRT,
    "terminate called without an active exception", docs/reliability.md) made torchrun report
    complete, correctly written runs as failed. The caller must have destroyed its process group
    and written its files (sepkit writes run-directory files atomically) before calling this; the
    log handlers and standard streams are flushed here, so skipping finalisation loses nothing.
    """
    if launched_by_torchrun():
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            # A closed stream or a broken pipe: nothing more can be saved there.
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)
    sys.exit(code)
