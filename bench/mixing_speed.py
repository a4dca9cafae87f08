"""On-the-fly examples of the demo family against the demo's training step (issue 22's headroom).

Batches of 4 training examples are built by ``dataset[i]`` in this process (the recipes'
``num_workers: 0``) from ``recipes/demo.yaml`` (dry), ``demo-noisy.yaml`` (+ real noise) and
``demo-reverb.yaml`` (+ a room from its pool, + noise), interleaved with the demo model's
training step on a batch of 4 x 1 s. Headroom = step time / batch time (>= 1: loading keeps up).
The corpus is one made by ``sepkit prepare`` (its training split is mixed on the fly); the
first run simulates and caches the reverberant recipe's room pool.

    sepkit prepare sepkit/corpora/librispeech-mini --out /tmp/rcn --test-speakers 20 \\
        --valid-speakers 10 --noise shipped
    python bench/mixing_speed.py --corpus /tmp/rcn [--threads 1] [--quick]
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import base_parser, interleaved_medians, machine_line, print_table

from sepkit.data import build_dataset
from sepkit.losses import pit_si_snr
from sepkit.models import build_model
from sepkit.recipe import load_recipe

RECIPES = Path(__file__).parents[1] / "recipes"
BATCH = 4


def batch_of_examples(recipe: str, corpus: Path) -> Callable[[], object]:
    cfg = load_recipe(RECIPES / f"{recipe}.yaml", [f"data.root={corpus}"]).data
    dataset = build_dataset(
        cfg, "train", train=True, seed=0, cache_path=corpus / f".bench-{recipe}.json"
    )
    dataset.set_epoch(0)
    index = itertools.count()
    return lambda: [dataset[next(index) % len(dataset)] for _ in range(BATCH)]


def training_step() -> Callable[[], object]:
    torch.manual_seed(0)
    model = build_model(load_recipe(RECIPES / "demo.yaml").model, 8000)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    sources = torch.randn(BATCH, 2, 8000) * 0.1
    mix = sources.sum(1)

    def step() -> float:
        loss = pit_si_snr(model(mix), sources)[0].mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    return step


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True, help="a sepkit prepare corpus")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    candidates = {
        r: batch_of_examples(r, args.corpus) for r in ("demo", "demo-noisy", "demo-reverb")
    }
    candidates["step"] = training_step()
    medians = interleaved_medians(candidates, args.repeats or (3 if args.quick else 30))
    step = medians.pop("step")
    print(
        f"Batches of {BATCH} on-the-fly examples vs the demo's step — {machine_line(args.threads)}"
    )
    rows = [[f"recipes/{r}.yaml", f"{t * 1e3:.1f}", f"{step / t:.1f}x"] for r, t in medians.items()]
    rows.append(["training step (demo, 4 x 1 s)", f"{step * 1e3:.1f}", "-"])
    print_table(["examples of", "ms / batch", "headroom vs step"], rows)


if __name__ == "__main__":
    main()
