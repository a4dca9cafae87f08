"""Overrides that make integration-test training runs small and fast."""

from __future__ import annotations

from pathlib import Path

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


def train_args(run_dir: Path, corpus: Path, *extra: str) -> list[str]:
    """``sepkit train`` arguments (after ``-m``) for a small run on ``corpus``, no test pass."""
    return [
        "sepkit",
        "train",
        str(DEMO_RECIPE),
        "--run-dir",
        str(run_dir),
        "--no-test",
        *train_overrides(corpus, *extra),
    ]


def train_overrides(corpus: Path, *extra: str) -> list[str]:
    return [
        f"data.root={corpus}",
        "data.batch_size=2",
        "data.training_signal_len=8000",
        "train.progress_bar=false",
        "train.max_minutes=null",
        "train.checkpoint_every_minutes=null",
        *TINY_MODEL,
        *extra,
    ]
