"""Per-step cost of sepkit's synchronised skip decision under DDP, measured in one run.

Launch with torchrun; every rank alternates a sepkit ``fit_batch`` (step guard: one extra small
all-reduce and one host sync before backward) with a bare DDP step on an identical model copy
(forward, PIT loss, backward, clip, Adam). Rank 0 prints the medians and the ratio.

    torchrun --standalone --nproc-per-node 2 bench/ddp_sync_overhead.py [--quick]
"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, str(Path(__file__).parent))
from common import base_parser, interleaved_medians, machine_line, print_table

from sepkit.data import Batch
from sepkit.losses import pit_si_snr
from sepkit.models import build_model
from sepkit.training import TrainConfig
from sepkit.training.trainer import Trainer


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--model", default="convtasnet")
    parser.add_argument("--preset", default="small")
    args = parser.parse_args()
    if "RANK" not in os.environ:
        sys.exit("run me with: torchrun --standalone --nproc-per-node 2 bench/ddp_sync_overhead.py")
    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = build_model({"name": args.model, "preset": args.preset})
    bare = DistributedDataParallel(copy.deepcopy(model))
    bare_opt = torch.optim.Adam(bare.parameters(), lr=1e-4)
    trainer = Trainer(
        model, torch.optim.Adam(model.parameters(), lr=1e-4), TrainConfig(progress_bar=False)
    )
    gen = torch.Generator().manual_seed(rank)
    sources = torch.randn(2, 2, 16000, generator=gen) * 0.1
    batch = Batch(sources.sum(1), sources)

    def bare_step() -> None:
        loss = pit_si_snr(bare(batch.mix), batch.sources)[0].mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(bare.parameters(), 5.0)
        bare_opt.step()
        bare_opt.zero_grad(set_to_none=True)

    repeats = args.repeats or (3 if args.quick else 30)
    medians = interleaved_medians(
        {"bare": bare_step, "sepkit": lambda: trainer.fit_batch(batch)},
        repeats,
        warmup=1 if args.quick else 3,
    )
    if rank == 0:
        ratio = medians["sepkit"] / medians["bare"]
        print(
            f"DDP step, {dist.get_world_size()} ranks (gloo), {args.model}/{args.preset}, "
            f"2 x 2 s per rank — {machine_line(args.threads)}"
        )
        print_table(
            ["bare DDP ms", "sepkit fit_batch ms", "ratio sepkit/bare"],
            [[f"{medians['bare'] * 1e3:.1f}", f"{medians['sepkit'] * 1e3:.1f}", f"{ratio:.3f}"]],
        )
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
