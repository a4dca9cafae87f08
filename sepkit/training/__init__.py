"""The robust, model-agnostic separation trainer."""

from sepkit.training.config import OptimConfig, TrainConfig

__all__ = ["OptimConfig", "TrainConfig"]
