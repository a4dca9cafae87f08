"""Finding and loading a trained model for separation: a run directory or a checkpoint/model file."""

from __future__ import annotations

import contextlib
import re
import warnings
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from sepkit.inference.common import (
    FALLBACK_SAMPLE_RATE,
)
from sepkit.models.contract import NO_CARD_HELP
from sepkit.models.io import ModelFileError, load_state_checked, read_payload
from sepkit.models.registry import build_model


def _ckpt_order(path: Path) -> tuple[int, float, str]:
    digits = re.findall(r"\d+", path.stem)
    return (int(digits[-1]) if digits else -1, path.stat().st_mtime, path.name)


def resolve_checkpoint(source: str | Path) -> Path:
    """A model file or checkpoint path as given; a run directory means its
    ``checkpoints/averaged.pt`` (written only when the run averages checkpoints, and the model
    its test results are for), else ``best.pt``, else its newest ``checkpoints/ckpt-*.pt``."""
    source = Path(source)
    if source.is_file():
        return source
    if not source.is_dir():
        raise ModelFileError(f"{source}: no such run directory or model file")
    ckpt_dir = source / "checkpoints"
    for name in ("averaged.pt", "best.pt"):
        if (ckpt_dir / name).is_file():
            return ckpt_dir / name
    best = ckpt_dir / "best.pt"
    candidates = sorted(ckpt_dir.glob("ckpt-*.pt"), key=_ckpt_order) if ckpt_dir.is_dir() else []
    if not candidates:
        raise ModelFileError(
            f"{source}: no checkpoint found (looked for {best} and {ckpt_dir}/ckpt-*.pt); "
            "train first or pass --checkpoint FILE"
        )
    return candidates[-1]


def _sample_rate_of(payload: dict[str, Any], ckpt: Path) -> int:
    config = payload.get("config")
    if isinstance(config, dict):
        rate = (config.get("data") or {}).get("sample_rate")
        if rate:
            return int(rate)
    if payload.get("sample_rate"):
        return int(payload["sample_rate"])
    for run_dir in (ckpt.parent, ckpt.parent.parent):  # <run>/checkpoints/x.pt or <run>/x.pt
        config_path = run_dir / "config.yaml"
        if config_path.is_file():
            with contextlib.suppress(
                OSError, yaml.YAMLError, AttributeError, TypeError, ValueError
            ):
                rate = (yaml.safe_load(config_path.read_text()).get("data") or {}).get(
                    "sample_rate"
                )
                if rate:
                    return int(rate)
    warnings.warn(
        f"{ckpt}: records no sample rate; assuming {FALLBACK_SAMPLE_RATE} Hz. Save model files with "
        "save_model(path, model, extra={'sample_rate': sr}) to avoid this",
        stacklevel=3,
    )
    return FALLBACK_SAMPLE_RATE


def load_model_for_separation(source: str | Path) -> tuple[nn.Module, int, Path, int]:
    """``(model in eval mode, its sample rate, the checkpoint's path, the run's
    train.test_shifts (1 if not recorded))`` from a run directory or a checkpoint/model file."""
    ckpt = resolve_checkpoint(source)
    payload = read_payload(ckpt)  # read once: checkpoints can be large
    if not payload["model_spec"]:
        raise ModelFileError(
            f"{ckpt}: holds no model spec, so the model cannot be rebuilt from it alone (it was "
            f"trained as a module sepkit did not build); {NO_CARD_HELP}"
        )
    model = build_model(payload["model_spec"], sample_rate=_sample_rate_of(payload, ckpt))
    load_state_checked(model, payload["model_state"], ckpt)
    model.eval()
    config = payload.get("config")
    train = config.get("train") if isinstance(config, dict) else None
    shifts = train.get("test_shifts") if isinstance(train, dict) else None
    return model, _sample_rate_of(payload, ckpt), ckpt, int(shifts or 1)
