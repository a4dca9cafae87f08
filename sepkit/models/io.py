"""Model files: weights plus the resolved model spec, so a model is rebuilt from the file alone.

A training checkpoint is a superset (it also holds optimiser, scheduler, RNG... state), so
:func:`load_model` accepts both a model file and a full checkpoint.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sepkit.models.contract import NO_CARD_HELP, card_of, spec_of
from sepkit.models.registry import build_model
from sepkit.utils.io import atomic_open

MODEL_FILE_FORMAT = "sepkit-model"


class ModelFileError(RuntimeError):
    """A model file or checkpoint cannot be read, or does not hold a sepkit model."""


def save_model(path: str | Path, model: nn.Module, extra: dict[str, Any] | None = None) -> None:
    """Atomically write ``{format, model_spec, model_state, sample_rate}`` (+ ``extra``) to
    ``path``. A model without a card (:mod:`sepkit.models.contract`) could not be rebuilt from
    the file: refused, before anything is written."""
    card = card_of(model)
    if card is None:
        raise ModelFileError(
            f"{path}: not written: {type(model).__name__} has no sepkit model card, so it could "
            f"not be rebuilt from the file; {NO_CARD_HELP}"
        )
    payload = {
        "format": MODEL_FILE_FORMAT,
        "version": 1,
        "model_spec": dict(card.spec),
        "model_state": model.state_dict(),
        **({"sample_rate": card.sample_rate} if card.sample_rate else {}),
        **(extra or {}),
    }
    with atomic_open(path, "wb") as handle:
        torch.save(payload, handle)


def read_payload(path: str | Path) -> dict[str, Any]:
    """``torch.load`` a sepkit file, turning every failure into an error that names the file."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a zip, pickle error...
        raise ModelFileError(
            f"{path}: cannot be read as a sepkit checkpoint or model file ({_load_failure(err)}); "
            "the file is corrupt or truncated"
        ) from err
    if not isinstance(payload, dict) or "model_state" not in payload or "model_spec" not in payload:
        raise ModelFileError(
            f"{path}: not a sepkit checkpoint or model file (no model_spec/model_state)"
        )
    return payload


def _load_failure(err: Exception) -> str:
    """One short line from ``torch.load``'s error. Its weights-only message runs to a page of
    advice (load with ``weights_only=False``, file an issue) that is wrong for a damaged file;
    the actual reason is the unpickler's line after ``WeightsUnpickler error:``."""
    text = str(err).strip()
    match = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
    reason = match.group(1) if match else (text.splitlines() or [""])[0]
    reason = reason.strip()
    if len(reason) > 160:
        reason = reason[:157] + "..."
    return f"{type(err).__name__}: {reason}" if reason else type(err).__name__


def load_model(path: str | Path) -> nn.Module:
    """Rebuild the model stored in a model file or checkpoint and load its weights."""
    payload = read_payload(path)
    model = build_model(payload["model_spec"])
    load_state_checked(model, payload["model_state"], path)
    return model


def load_state_checked(model: nn.Module, state: dict[str, Any], path: str | Path) -> None:
    """Load weights strictly; a mismatch says which keys and shapes differ, and in which file."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ModelFileError(
            f"{path}: weights do not fit the model {(spec_of(model) or {}).get('name')} "
            f"({str(err).splitlines()[0]} ...); is it a checkpoint of another model or config?"
        ) from err
