"""Launched by torchrun (:func:`helpers.ddp_scenarios.run_worker`): runs one DDP scenario on real
gloo ranks and saves each rank's result (weights, losses, skip counters) for the caller to compare.

    python -m torch.distributed.run --standalone --nproc-per-node=2 ddp_worker.py NAME OUT [SPEC]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers import ddp_scenarios as sc
from sepkit.training.distributed import shutdown
from sepkit.training.trainer import Trainer
from sepkit.utils.launch import exit_process


def main() -> None:
    name, out = sys.argv[1], Path(sys.argv[2])
    spec = sys.argv[3] if len(sys.argv) > 3 else ""
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    try:  # as sepkit.run.train does: leave the process group however the run ends
        train(name, spec, out)
    finally:
        shutdown()


def train(name: str, spec: str, out: Path) -> None:
    rank, world = dist.get_rank(), dist.get_world_size()
    failure = sc.Failure.decode(spec) if name == "rank_fails_alone" else None
    cfg, batches = sc.scenario(name, spec)
    model = sc.make_model()
    trainer = Trainer(model, sc.make_optimizer(model), cfg, device="cpu")
    losses = []
    for step, batch in enumerate(batches):
        if failure is not None and (rank, step) == (failure.rank, failure.step):
            (out / "failed_at").write_text(repr(time.time()))
            raise sc.RankFailure(f"rank {rank} fails alone at step {step}")
        sc.arm_grad_fault(trainer.module, name, spec, step, rank)
        losses.append(trainer.fit_batch(sc.rank_slice(batch, rank, world)))
    valid_loss = None
    if name == "odd_validation":
        valid_loss = trainer.evaluate(sc.validation_loader(rank, world))
    torch.save(
        {
            "valid_loss": valid_loss,
            "state": trainer.module.state_dict(),
            "losses": losses,
            "nonfinite_count": trainer.nonfinite_count,
            "updates": trainer.updates,
            "skip_reasons": dict(trainer.skip_reasons),
        },
        out / f"rank{rank}.pt",
    )
    del trainer, model  # DDP holds the process group; release it before shutdown()


if __name__ == "__main__":
    # Leave the way `sepkit train` under torchrun does (sepkit.cli.entry), so the scenarios
    # exercise the exit path users' jobs take: a finished rank through exit_process; a failing
    # one raises as the CLI's unexpected errors do (torchrun then names it as the root cause,
    # which a rank leaving through os._exit(1) at once would not reliably be).
    main()
    exit_process(0)
