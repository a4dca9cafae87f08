"""Launched by torchrun from test_ddp.py: runs one scenario, saves each rank's result."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers import ddp_scenarios as sc

from sepkit.training.distributed import shutdown
from sepkit.training.trainer import Trainer


def main() -> None:
    name, out = sys.argv[1], Path(sys.argv[2])
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    cfg, batches = sc.scenario(name)
    model = sc.make_model()
    trainer = Trainer(model, sc.make_optimizer(model), cfg, device="cpu")
    losses = [trainer.fit_batch(sc.rank_slice(b, rank, world)) for b in batches]
    torch.save(
        {
            "state": trainer.module.state_dict(),
            "losses": losses,
            "nonfinite_count": trainer.nonfinite_count,
            "updates": trainer.updates,
            "skip_reasons": dict(trainer.skip_reasons),
        },
        out / f"rank{rank}.pt",
    )
    del trainer, model  # DDP holds the process group; release it first
    shutdown()


if __name__ == "__main__":
    main()
