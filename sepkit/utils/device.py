"""Device names (``auto``, ``cpu``, ``cuda``, ``cuda:N``) to ``torch.device``, for training and
separation alike."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """``auto`` = CUDA when available, else CPU; a CUDA device on a machine without one is an
    error that names the setting."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name}: CUDA is not available on this machine")
    return device
