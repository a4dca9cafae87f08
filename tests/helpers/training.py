"""Overrides that make integration-test training runs small and fast."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

# A Conv-TasNet small enough that a training step takes a few milliseconds on one core.
TINY_MODEL = [
    "model.name=convtasnet",
    "model.N=16",
    "model.L=16",
    "model.B=16",
    "model.H=32",
    "model.X=2",
    "model.R=1",
]


DEMO_RECIPE = Path(__file__).parents[2] / "recipes" / "demo-synthetic.yaml"


# A dual-path RNN with dropout: training draws from the RNG at every step.
TINY_DROPOUT_MODEL = {
    "name": "dprnn",
    "N": 16,
    "L": 16,
    "hidden": 8,
    "chunk_size": 20,
    "num_blocks": 1,
    "dropout": 0.3,
}


def recipe_with_model(directory: Path, model: dict[str, object]) -> Path:
    """The demo recipe with its ``model`` section replaced (overrides can only change keys of
    the recipe's own model)."""
    recipe = yaml.safe_load(DEMO_RECIPE.read_text())
    recipe["model"] = model
    path = directory / f"recipe-{model['name']}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def train_args(
    run_dir: Path,
    corpus: Path,
    *extra: str,
    model: Sequence[str] = TINY_MODEL,
    recipe: Path = DEMO_RECIPE,
) -> list[str]:
    """``sepkit train`` arguments (after ``-m``) for a small run on ``corpus``, no test pass."""
    return [
        "sepkit",
        "train",
        str(recipe),
        "--run-dir",
        str(run_dir),
        "--no-test",
        *train_overrides(corpus, *extra, model=model),
    ]


def train_overrides(corpus: Path, *extra: str, model: Sequence[str] = TINY_MODEL) -> list[str]:
    return [
        f"data.root={corpus}",
        "data.batch_size=2",
        "data.training_signal_len=8000",
        "train.progress_bar=false",
        "train.max_minutes=null",
        "train.checkpoint_every_minutes=null",
        *model,
        *extra,
    ]


def train_recipe_two_steps(
    recipe: str, root: Path, run_dir: Path, *extra: str
) -> dict[str, object]:
    """A shipped recipe (``sepkit/recipes/<recipe>``), as it is, trained for two steps of one
    example on ``root``, in this process: the smoke test every recipe gets."""
    import torch

    from sepkit.recipe import load_recipe
    from sepkit.run import train

    cfg = load_recipe(
        Path(__file__).parents[2] / "sepkit" / "recipes" / recipe,
        [
            f"data.root={root}",
            "data.batch_size=1",
            "data.num_workers=0",
            "data.max_examples=2",
            "train.max_steps=2",
            "train.max_minutes=null",
            "train.checkpoint_every_minutes=null",
            "train.progress_bar=false",
            "train.save_audio=false",
            *extra,
        ],
    )
    torch.manual_seed(0)
    return train(cfg, run_dir, test_after=False)


def resume_matches_uninterrupted(recipe: str, overrides: Sequence[str], work: Path) -> bool:
    """Train a shipped recipe for 2 epochs straight, and for 1 epoch then 2 more (a stop and a
    resume in between, same run directory); whether the final weights are bit-identical."""
    import torch

    from sepkit.recipe import load_recipe
    from sepkit.run import train

    def run(run_dir: Path, epochs: int) -> dict[str, torch.Tensor]:
        path = Path(__file__).parents[2] / "sepkit" / "recipes" / recipe
        cfg = load_recipe(path, [*overrides, f"train.epochs={epochs}"])
        torch.manual_seed(0)
        train(cfg, run_dir, test_after=False)
        ckpts = sorted((run_dir / "checkpoints").glob("ckpt-*.pt"), key=lambda p: p.stat().st_mtime)
        state: dict[str, torch.Tensor] = torch.load(
            ckpts[-1], map_location="cpu", weights_only=False
        )["model_state"]
        return state

    expected = run(work / "reference", 2)
    run(work / "resumed", 1)
    final = run(work / "resumed", 2)
    assert "resumed from" in (work / "resumed" / "train.log").read_text()
    return expected.keys() == final.keys() and all(
        torch.equal(expected[k], final[k]) for k in expected
    )
