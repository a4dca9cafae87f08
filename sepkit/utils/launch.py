"""How this process was started, read from the environment alone (no torch import: the CLI asks
it on its way out, and ``sepkit --help`` should not pay for loading torch)."""

from __future__ import annotations

import os


def launched_by_torchrun() -> bool:
    """A worker of a multi-process torchrun job (``RANK`` set, ``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ
