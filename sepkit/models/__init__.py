"""Separation models: plain ``nn.Module``s mapping ``mix [B, T]`` to ``est [B, C, T]``.

They know nothing of training; the registry builds them from a recipe's ``model`` section.
"""

from sepkit.models.registry import (
    available_models,
    build_model,
    model_config_from_dict,
    model_spec,
    register_model,
)

__all__ = [
    "available_models",
    "build_model",
    "model_config_from_dict",
    "model_spec",
    "register_model",
]
