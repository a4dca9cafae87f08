"""torchrun integration: initialise the process group from the environment torchrun sets."""

from __future__ import annotations

import datetime
import logging
import os
import sys
import time

import torch
import torch.distributed as dist

from sepkit.utils.launch import launched_by_torchrun

log = logging.getLogger(__name__)


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


def shutdown(failed: bool | None = None) -> None:
    """Leave the process group. Drop DDP-wrapped models before.

    After a normal end every rank waits for the others, then destroys the group: destroying
    gloo's group while a peer is still in its last collective (or exiting without destroying it
    at all) can abort the process ("terminate called without an active exception"; gloo issue
    #155, "Barrier followed by context destruction causes some participants to fail"). A gloo
    barrier returns on one rank while a peer may still be draining its last barrier message, and
    the first rank to destroy its connections can then break that peer. So after the barrier the
    ranks also meet through the process group's key-value store, which is not a gloo connection:
    once every rank has checked in there, no gloo traffic is left anywhere. (A rare end-of-job
    abort has still been seen since; docs/reliability.md tracks it.)

    After a failure there is no barrier. ``failed`` defaults to "called while an exception
    propagates" (from a ``finally``, as :func:`sepkit.run.train` does). A rank failing alone (a bad
    file, an out-of-memory error...) would otherwise wait in the barrier for peers that are
    blocked in the step's all-reduce waiting for *it*: a deadlock until the process group's timeout
    (30 min). Leaving at once closes its connections, the peers' collective fails within
    milliseconds, and torchrun, seeing a worker exit non-zero, stops the rest of the job.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    if failed is None:
        failed = sys.exc_info()[1] is not None
    if failed:
        log.warning("rank %d leaves the process group after an error (no barrier)", rank())
        dist.destroy_process_group()
        return
    try:
        dist.barrier()
        _meet_in_store("shutdown")
    finally:
        dist.destroy_process_group()


_meetings = 0


def _meet_in_store(tag: str, timeout_s: float = 60.0) -> None:
    """Wait until every rank has called this (a barrier through the store, not through gloo).

    The key is unique per call (every rank counts its calls alike), so a store that outlives one
    process group (torchrun's, across ``init``/``shutdown`` in one process) is never confused by
    an old count. A peer that never checks in (it died just now) costs ``timeout_s``, then this
    rank shuts down anyway.
    """
    global _meetings
    _meetings += 1
    store = dist.distributed_c10d._get_default_store()
    key = f"sepkit/{tag}/{_meetings}"
    store.add(key, 1)
    deadline = time.monotonic() + timeout_s
    while store.add(key, 0) < world_size():
        if time.monotonic() > deadline:
            log.warning("rank %d: not every rank reached %s in %.0f s", rank(), tag, timeout_s)
            return
        time.sleep(0.005)
