"""The robust, model-agnostic separation trainer.

``Trainer`` is resolved lazily, so that importing the config classes (``sepkit.recipe`` does)
loads neither torch nor the trainer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sepkit.training.config import OptimConfig, TrainConfig

if TYPE_CHECKING:
    from sepkit.training.trainer import Trainer

__all__ = ["OptimConfig", "TrainConfig", "Trainer"]


def __getattr__(name: str) -> Any:
    if name == "Trainer":
        from sepkit.training.trainer import Trainer

        return Trainer
    raise AttributeError(f"module 'sepkit.training' has no attribute {name!r}")
