"""DDP scenarios shared by the torchrun worker (``ddp_worker.py``) and the single-process
reference they are compared with.

Every rank takes an equal slice of one global batch, so 2 ranks x B/2 can be compared with
1 process x B on exactly the same examples and the same initial weights. A scenario is a name plus
an optional spec string (passed on the worker's command line), so the fault scenarios can vary
which rank, which step and which value without a file per variant.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from helpers.processes import kill_tree
from helpers.tiny_model import TinySeparator
from sepkit.data import Batch
from sepkit.data.batch import Example, collate
from sepkit.data.sampler import ResumableSampler
from sepkit.losses import pit_si_snr
from sepkit.training import TrainConfig
from sepkit.training.trainer import Trainer

GLOBAL_BATCH = 4
WORLD = 2
STEPS = 4
NAN_STEP = 2  # the default step of a Fault
WORKER = Path(__file__).with_name("ddp_worker.py")
#: A scenario takes a few seconds; one still running after this has hung (and fails the test).
WORKER_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class Fault:
    """A NaN/inf on one rank only: in one mixture sample of that rank's slice (``where="mix"``:
    a nonfinite loss on that rank) or in one element of one parameter's gradient on that rank
    (``where="grad"``: DDP's all-reduce carries it to every rank)."""

    rank: int = 1
    step: int = NAN_STEP
    where: str = "mix"  # mix | grad
    value: float = math.nan

    def encode(self) -> str:
        return f"{self.rank}:{self.step}:{self.where}:{self.value!r}"

    @classmethod
    def decode(cls, spec: str) -> Fault:
        rank, step, where, value = spec.split(":")
        return cls(int(rank), int(step), where, float(value))

    @property
    def reason(self) -> str:
        """The skip reason every rank must report."""
        return "nonfinite_grad" if self.where == "grad" else "nonfinite_loss"


@dataclass(frozen=True)
class Filtered:
    """Every example of ``rank``'s slice of global batch ``batch`` falls below the threshold."""

    rank: int = 0
    batch: int = 0

    def encode(self) -> str:
        return f"{self.rank}:{self.batch}"

    @classmethod
    def decode(cls, spec: str) -> Filtered:
        rank, batch = spec.split(":")
        return cls(int(rank), int(batch))


def make_model() -> TinySeparator:
    torch.manual_seed(0)
    return TinySeparator(num_spks=2, channels=16)


def make_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.05)


def global_batch(step: int, length: int = 1600) -> Batch:
    gen = torch.Generator().manual_seed(100 + step)
    t = torch.arange(length) / 8000
    freqs = 100 + 900 * torch.rand(GLOBAL_BATCH, 2, 1, generator=gen)
    sources = torch.sin(2 * math.pi * freqs * t) + 0.1 * torch.randn(
        GLOBAL_BATCH, 2, length, generator=gen
    )
    return Batch(sources.sum(1), sources, [f"s{step}-u{i}" for i in range(GLOBAL_BATCH)])


@dataclass(frozen=True)
class Failure:
    """``rank`` raises an error of its own at ``step`` (a bad file, an out-of-memory error...)
    while the other rank goes on into the step's collectives."""

    rank: int = 1
    step: int = 2

    def encode(self) -> str:
        return f"{self.rank}:{self.step}"

    @classmethod
    def decode(cls, spec: str) -> Failure:
        rank, step = spec.split(":")
        return cls(int(rank), int(step))


class RankFailure(RuntimeError):
    """The error :class:`Failure` raises."""


def easy_on_rank_threshold(filtered: Filtered) -> tuple[list[int], float]:
    """An order of global batch ``filtered.batch`` putting its two lowest-loss examples in
    ``filtered.rank``'s slice, and a threshold between the 2nd and 3rd lowest loss: that rank's
    examples are all filtered, the other rank's kept."""
    model = make_model()
    batch = global_batch(filtered.batch)
    with torch.no_grad():
        losses, _ = pit_si_snr(model(batch.mix), batch.sources)
    order = torch.argsort(losses).tolist()
    easy, hard = order[:2], order[2:]
    order = easy + hard if filtered.rank == 0 else hard + easy
    ranked = torch.sort(losses).values
    return order, float((ranked[1] + ranked[2]) / 2)


def reorder(batch: Batch, order: list[int]) -> Batch:
    return Batch(batch.mix[order], batch.sources[order], [batch.ids[i] for i in order])


def scenario(name: str, spec: str = "") -> tuple[TrainConfig, list[Batch]]:
    """The config and the global batches of a scenario (``spec``: see :class:`Fault`,
    :class:`Filtered`; empty = the default variant)."""
    batches = [global_batch(step) for step in range(STEPS)]
    cfg = TrainConfig(progress_bar=False, clip_grad_norm=5.0)
    if name == "nan_on_rank":
        fault = Fault.decode(spec) if spec else Fault()
        if fault.where == "mix":
            per_rank = GLOBAL_BATCH // WORLD
            batches[fault.step].mix[fault.rank * per_rank + per_rank - 1, 10] = fault.value
    elif name == "rank_all_filtered":
        filtered = Filtered.decode(spec) if spec else Filtered()
        order, threshold = easy_on_rank_threshold(filtered)
        batches = [reorder(global_batch(filtered.batch), order)]
        cfg = TrainConfig(progress_bar=False, clip_grad_norm=-1.0, threshold=threshold)
    elif name == "rank_fails_alone":
        Failure.decode(spec or Failure().encode())  # checked here; raised by the worker
    elif name == "grad_accumulation":
        cfg = TrainConfig(progress_bar=False, clip_grad_norm=5.0, grad_accumulation=2)
    elif name not in ("same_as_single", "odd_validation"):
        raise ValueError(f"unknown scenario {name}")
    return cfg, batches


def arm_grad_fault(model: nn.Module, name: str, spec: str, step: int, rank: int | None) -> None:
    """Before ``step``: a one-shot gradient hook putting the fault's value into the gradient of
    the first parameter, on the fault's rank only (``rank=None``: the single-process reference,
    which holds every rank's examples)."""
    if name != "nan_on_rank" or not spec:
        return
    fault = Fault.decode(spec)
    if fault.where != "grad" or step != fault.step or rank not in (None, fault.rank):
        return
    param = next(model.parameters())

    def poison(grad: Tensor) -> Tensor:
        handle.remove()
        grad = grad.clone()
        grad.view(-1)[0] = fault.value
        return grad

    handle = param.register_hook(poison)


def rank_slice(batch: Batch, rank: int, world: int) -> Batch:
    per = len(batch) // world
    sl = slice(rank * per, (rank + 1) * per)
    return Batch(batch.mix[sl], batch.sources[sl], batch.ids[sl])


def torchrun(*args: str, nproc: int = WORLD) -> list[str]:
    """``python -m torch.distributed.run --standalone`` with ``nproc`` workers."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return [*launcher, f"--nproc-per-node={nproc}", *args]


def run_worker(
    name: str, out: Path, spec: str = "", timeout: float = WORKER_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """Run one scenario under torchrun (2 gloo ranks); each rank saves ``out/rank<r>.pt``.

    A job still running after ``timeout`` s has hung: torchrun *and its workers* are killed (they
    run in sessions of their own, so killing torchrun alone would leave them blocked in gloo) and
    ``subprocess.TimeoutExpired`` is raised.
    """
    out.mkdir(parents=True, exist_ok=True)
    command = torchrun(str(WORKER), name, str(out), *([spec] if spec else []))
    with subprocess.Popen(
        command,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree(proc.pid)
            proc.communicate()
            raise
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


def load_results(out: Path) -> list[dict]:
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def single_process(name: str, spec: str = "") -> Trainer:
    """The reference: one process taking the whole global batches."""
    cfg, batches = scenario(name, spec)
    model = make_model()
    trainer = Trainer(model, make_optimizer(model), cfg, device="cpu")
    for step, batch in enumerate(batches):
        arm_grad_fault(trainer.module, name, spec, step, rank=None)
        trainer.fit_batch(batch)
    return trainer


#: Validation examples of ``odd_validation``: an odd count, so the sampler pads rank 1's share
#: with a repeat of the first example (3 + 3 batches for 5 examples).
VALID_EXAMPLES = 5


def validation_loader(rank: int = 0, world: int = 1) -> torch.utils.data.DataLoader:
    """The product's sampler (padded by wrapping under DDP) over ``VALID_EXAMPLES`` examples of
    different loudness, so a repeated example shifts the mean loss."""
    examples = []
    for index in range(VALID_EXAMPLES):
        batch = global_batch(50 + index)
        sources = batch.sources[0] * torch.tensor([[1.0], [0.2 + 0.3 * index]])
        examples.append(Example(f"valid-{index}", sources.sum(0), sources))
    sampler = ResumableSampler(len(examples), shuffle=False, rank=rank, world_size=world)
    return torch.utils.data.DataLoader(
        examples,  # type: ignore[arg-type]
        batch_size=1,
        sampler=sampler,
        collate_fn=collate,
    )
