"""Model registry: a recipe's ``model:`` section names a model and its parameters.

Each model module registers a typed config dataclass and a builder. The config class may carry
``PRESETS: dict[str, dict]`` (e.g. ``default`` = published sizes, ``small`` = CPU sizes); the recipe's
``preset`` key picks one and explicit keys override it. The resolved dict (``name`` + every field) is
what checkpoints store, so a model can be rebuilt from a checkpoint alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from sepkit.config import ConfigError, build_dataclass, to_dict


@dataclass(frozen=True)
class ModelEntry:
    name: str
    config_cls: type
    builder: Callable[[Any], nn.Module]


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str, config_cls: type
) -> Callable[[Callable[[Any], nn.Module]], Callable[[Any], nn.Module]]:
    """Decorator: ``@register_model("convtasnet", ConvTasNetConfig)`` on ``def build(cfg) -> nn.Module``."""

    def decorator(builder: Callable[[Any], nn.Module]) -> Callable[[Any], nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelEntry(name, config_cls, builder)
        return builder

    return decorator


def _ensure_builtin_models_loaded() -> None:
    # Importing the package registers the built-in models; deferred to avoid import cycles.
    import sepkit.models.zoo  # noqa: F401


def available_models() -> list[str]:
    _ensure_builtin_models_loaded()
    return sorted(_REGISTRY)


def model_config_from_dict(spec: Mapping[str, Any]) -> tuple[str, Any]:
    """Resolve ``{name, preset?, **params}`` into ``(name, typed config)``; errors name the key."""
    _ensure_builtin_models_loaded()
    if not isinstance(spec, Mapping):
        raise ConfigError(f"model: expected a mapping with a 'name', got {spec!r}")
    params = dict(spec)
    name = params.pop("name", None)
    if name is None:
        raise ConfigError(f"model.name: missing; one of {', '.join(sorted(_REGISTRY))}")
    if name not in _REGISTRY:
        raise ConfigError(
            f"model.name: unknown model {name!r}; one of {', '.join(sorted(_REGISTRY))}"
        )
    entry = _REGISTRY[name]
    presets: dict[str, dict[str, Any]] = getattr(entry.config_cls, "PRESETS", {})
    preset = params.pop("preset", "default")
    if preset != "default" and preset not in presets:
        choices = ", ".join(["default", *presets])
        raise ConfigError(f"model.preset: unknown preset {preset!r} for {name}; one of {choices}")
    merged = {**presets.get(preset, {}), **params}
    return name, build_dataclass(entry.config_cls, merged, prefix="model")


def model_spec(name: str, config: Any) -> dict[str, Any]:
    """The fully resolved, serialisable form of a model config (what checkpoints store)."""
    if not dataclasses.is_dataclass(config):
        raise TypeError("model config must be a dataclass")
    return {"name": name, **to_dict(config)}


def build_model(spec: Mapping[str, Any]) -> nn.Module:
    """Build a model from a recipe's ``model`` section or a checkpoint's stored spec."""
    name, config = model_config_from_dict(spec)
    model = _REGISTRY[name].builder(config)
    model.sepkit_spec = model_spec(name, config)  # type: ignore[assignment]
    return model
