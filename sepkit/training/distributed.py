"""torchrun integration: initialise the process group from the environment torchrun sets."""

from __future__ import annotations

import datetime
import logging
import os

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def init_from_env(device: str = "auto", timeout_minutes: float = 30.0) -> torch.device | None:
    """Initialise the default process group when launched by torchrun (gloo on CPU, NCCL on
    CUDA). Returns the device this rank should use, or None when not distributed."""
    if not launched_by_torchrun() or dist.is_initialized():
        return None
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if use_cuda:
        torch.cuda.set_device(local_rank)
    backend = "nccl" if use_cuda else "gloo"
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_minutes))
    log.info(
        "rank %d/%d (local %d) on %s", dist.get_rank(), dist.get_world_size(), local_rank, backend
    )
    return torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def shutdown() -> None:
    """Leave the process group cleanly: wait for every rank, then destroy it.

    Destroying gloo's group while a peer is still in its last collective (or exiting without
    destroying it at all) can abort the process at exit ("terminate called without an active
    exception"); the barrier makes every rank arrive first. Drop DDP-wrapped models before.
    """
    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()
