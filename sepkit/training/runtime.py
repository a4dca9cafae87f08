"""Process-level settings: device, torch threads, precision, seeding, RNG state capture."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from sepkit.training.config import Precision
from sepkit.utils.device import resolve_device

__all__ = ["resolve_device"]  # re-exported: the trainer's device comes from here too

# On a small machine, intra-op threads are fragile: they help a process alone on the machine and
# hurt badly next to any other busy process (a data-loader worker, a corpus generator, another
# job), while one thread per process loses little (bench/threads.py; figures in
# docs/benchmarks.md). So sepkit defaults to 1 thread per process on machines with <= 4 cores and
# uses the cores through processes instead (`sepkit demo` trains with one DDP process per core),
# and to half the cores above that. ``threads=N`` in a recipe overrides it.
SMALL_MACHINE_CORES = 4


def default_threads() -> int:
    cores = os.cpu_count() or 1
    return 1 if cores <= SMALL_MACHINE_CORES else max(1, cores // 2)


def set_threads(threads: int) -> int:
    """Set torch intra-op threads (0 = :func:`default_threads`); returns the number used."""
    n = threads or default_threads()
    torch.set_num_threads(n)
    return n


def worker_init_fn(_worker_id: int) -> None:
    """Data-loader workers get one thread each, so they never fight the training process."""
    torch.set_num_threads(1)


def autocast_dtype(precision: Precision) -> torch.dtype | None:
    return {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager[Any]:
    """Mixed-precision context for the forward pass; a no-op in fp32."""
    dtype = autocast_dtype(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    # Stored as tensors and plain Python values so checkpoints load with weights_only=True.
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    assert isinstance(keys, np.ndarray)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [
            name,
            torch.from_numpy(keys.astype(np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError):  # fewer GPUs than when saved
            torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """Temporarily switch to eval mode, restoring the previous mode afterwards."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)
