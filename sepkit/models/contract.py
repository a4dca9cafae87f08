"""The model contract: what sepkit asks of a separation model, and what it records about it.

A separation model is a plain ``nn.Module`` whose ``forward(mix [B, T])`` returns ``est
[B, C, T]`` for any T. Nothing else is required to *train* it. To be rebuilt later from a
checkpoint or model file alone (``sepkit evaluate``, ``sepkit separate``, ``init_from``), sepkit
must also know how to build it again and at which sample rate it works. That is the model's
**card**: its *spec* (``{"name": ..., **parameters}``, the resolved recipe section) and its
sample rate.

:func:`sepkit.models.build_model` writes the card on every model it builds: the built-in models by
registered name, and a user's own model named in a recipe by a dotted path
(``model.name: mypkg.nets:MyNet`` plus its keyword arguments), or registered with
:func:`sepkit.models.register_model`. A module built by other means has no card: it trains and
resumes as usual, but its checkpoints cannot be rebuilt alone, so the trainer says so (once) when it
writes the first one, and :func:`sepkit.models.io.save_model` refuses it with an error saying how
to give it a card.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

_CARD_ATTRIBUTE = "sepkit_card"


@dataclass(frozen=True)
class ModelCard:
    """How to rebuild a model (``spec``: name + parameters) and the sample rate it runs at."""

    spec: dict[str, Any]
    sample_rate: int | None = None


def attach_card(model: nn.Module, spec: dict[str, Any], sample_rate: int | None = None) -> None:
    """Record ``model``'s card (done by :func:`sepkit.models.build_model`)."""
    setattr(model, _CARD_ATTRIBUTE, ModelCard(dict(spec), sample_rate))


def card_of(model: nn.Module) -> ModelCard | None:
    """The model's card, or None for a module sepkit did not build."""
    card = getattr(model, _CARD_ATTRIBUTE, None)
    return card if isinstance(card, ModelCard) else None


def spec_of(model: nn.Module) -> dict[str, Any] | None:
    """The spec that rebuilds ``model`` (a copy), or None when it has no card."""
    card = card_of(model)
    return dict(card.spec) if card is not None else None


NO_CARD_HELP = (
    "build it with sepkit.models.build_model (a built-in name, or a recipe's "
    "model.name: 'package.module:Class' with its keyword arguments), or register it with "
    "sepkit.models.register_model"
)
