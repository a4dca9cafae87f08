"""sepkit: train and run speech-separation models with a training loop that survives NaNs,
crashes and bad data."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Separator", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `import sepkit` (and the CLI's start-up) does not pay for torch and the models.
    if name == "Separator":
        from sepkit.inference import Separator

        return Separator
    raise AttributeError(f"module 'sepkit' has no attribute {name!r}")
