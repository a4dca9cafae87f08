"""Separation models: plain ``nn.Module``s mapping ``mix [B, T]`` to ``est [B, C, T]``.

They know nothing of training; the registry builds them from a recipe's ``model`` section and
records how to rebuild them (the model contract, :mod:`sepkit.models.contract`).
"""

from sepkit.models.contract import ModelCard, card_of, spec_of
from sepkit.models.registry import (
    available_models,
    build_model,
    model_config_from_dict,
    model_spec,
    register_model,
)

__all__ = [
    "ModelCard",
    "available_models",
    "build_model",
    "card_of",
    "model_config_from_dict",
    "model_spec",
    "register_model",
    "spec_of",
]
