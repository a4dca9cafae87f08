"""Model registry: a recipe's ``model:`` section names a model and its parameters.

Three kinds of names:

* a built-in model (:data:`BUILTIN_MODELS`): a typed config dataclass and a builder. The config
  class may carry ``PRESETS: dict[str, dict]`` (``small`` = CPU sizes...); the recipe's ``preset``
  key picks one and explicit keys override it;
* a model registered at run time with :func:`register_model` (the same form);
* a dotted path, ``package.module:Callable``: the callable is called with the section's other
  keys as keyword arguments. A user's own model needs no registration at all.

The resolved dict (``name`` + every parameter) is the model's spec, which checkpoints store, so a
model can be rebuilt from a checkpoint alone (:mod:`sepkit.models.contract`). The built-in model
modules know nothing of this registry; it imports them.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from sepkit.config import ConfigError, build_dataclass, to_dict
from sepkit.models.contract import attach_card
from sepkit.models.convtasnet import ConvTasNetConfig, build_convtasnet
from sepkit.models.dprnn import DPRNNConfig, build_dprnn
from sepkit.models.sepformer import SepFormerConfig, build_sepformer
from sepkit.utils.imports import import_object, is_dotted_path


@dataclass(frozen=True)
class ModelEntry:
    name: str
    config_cls: type
    builder: Callable[[Any], nn.Module]


BUILTIN_MODELS = {
    entry.name: entry
    for entry in (
        ModelEntry("convtasnet", ConvTasNetConfig, build_convtasnet),
        ModelEntry("dprnn", DPRNNConfig, build_dprnn),
        ModelEntry("sepformer", SepFormerConfig, build_sepformer),
    )
}
_REGISTRY: dict[str, ModelEntry] = dict(BUILTIN_MODELS)


def register_model(
    name: str, config_cls: type
) -> Callable[[Callable[[Any], nn.Module]], Callable[[Any], nn.Module]]:
    """Decorator: ``@register_model("mynet", MyNetConfig)`` on ``def build(cfg) -> nn.Module``."""

    def decorator(builder: Callable[[Any], nn.Module]) -> Callable[[Any], nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelEntry(name, config_cls, builder)
        return builder

    return decorator


def available_models() -> list[str]:
    return sorted(_REGISTRY)


def model_config_from_dict(spec: Mapping[str, Any]) -> tuple[str, Any]:
    """Resolve ``{name, preset?, **params}`` into ``(name, config)``; errors name the key.

    ``config`` is the model's typed config dataclass, or for a dotted-path model the keyword
    arguments (checked against the callable's signature)."""
    if not isinstance(spec, Mapping):
        raise ConfigError(f"model: expected a mapping with a 'name', got {spec!r}")
    params = dict(spec)
    name = params.pop("name", None)
    if name is None:
        raise ConfigError(f"model.name: missing; one of {', '.join(available_models())}")
    if isinstance(name, str) and is_dotted_path(name):
        return name, _dotted_kwargs(name, params)
    if name not in _REGISTRY:
        raise ConfigError(
            f"model.name: unknown model {name!r}; one of {', '.join(available_models())}, "
            "or 'package.module:Class' for a model of your own"
        )
    entry = _REGISTRY[name]
    presets: dict[str, dict[str, Any]] = getattr(entry.config_cls, "PRESETS", {})
    preset = params.pop("preset", "default")
    if preset != "default" and preset not in presets:
        choices = ", ".join(["default", *presets])
        raise ConfigError(f"model.preset: unknown preset {preset!r} for {name}; one of {choices}")
    merged = {**presets.get(preset, {}), **params}
    return name, build_dataclass(entry.config_cls, merged, prefix="model")


def _dotted_kwargs(name: str, params: dict[str, Any]) -> dict[str, Any]:
    try:
        factory = import_object(name, "model.name")
    except ValueError as err:
        raise ConfigError(str(err)) from err
    if not callable(factory):
        raise ConfigError(f"model.name: {name!r} is not a class or function")
    try:
        inspect.signature(factory).bind(**params)
    except TypeError as err:
        raise ConfigError(f"model: {name} does not take these parameters ({err})") from err
    except ValueError:  # no signature to check (a builtin): the call itself will tell
        pass
    return params


def model_spec(name: str, config: Any) -> dict[str, Any]:
    """The fully resolved, serialisable form of a model config (what checkpoints store)."""
    if isinstance(config, dict):  # a dotted-path model's keyword arguments
        return {"name": name, **config}
    if not dataclasses.is_dataclass(config):
        raise TypeError("model config must be a dataclass")
    return {"name": name, **to_dict(config)}


def build_model(spec: Mapping[str, Any], sample_rate: int | None = None) -> nn.Module:
    """Build a model from a recipe's ``model`` section or a checkpoint's stored spec, with its
    card (:mod:`sepkit.models.contract`); ``sample_rate``: the rate it will run at, if known."""
    name, config = model_config_from_dict(spec)
    if isinstance(config, dict):
        model = import_object(name, "model.name")(**config)
        if not isinstance(model, nn.Module):
            raise ConfigError(
                f"model.name: {name} built a {type(model).__name__}, not an nn.Module"
            )
    else:
        model = _REGISTRY[name].builder(config)
    attach_card(model, model_spec(name, config), sample_rate)
    return model
