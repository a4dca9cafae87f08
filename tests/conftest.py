"""Shared fixtures. Tests run with one torch thread: the CI machine has two cores."""

from __future__ import annotations

import torch

torch.set_num_threads(1)
