"""``sepkit train``: a recipe, overrides, a run directory."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Train from RECIPE with dotted key=value overrides, e.g. train.threshold=-20 "
        "data.batch_size=2 model.num_spks=3. An unknown key or a wrong type is an error naming "
        "the key. Re-running the same command resumes from the newest checkpoint."
    )
    p.add_argument("recipe", type=Path, help="YAML recipe (see recipes/)")
    p.add_argument("--run-dir", type=Path, required=True, help="where everything is written")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.add_argument("--no-test", action="store_true", help="skip the test pass after training")


def run(args: argparse.Namespace) -> int:
    from sepkit.cli.evaluate import print_test_summary
    from sepkit.recipe import load_recipe
    from sepkit.run import train

    cfg = load_recipe(args.recipe, args.overrides)
    summary = train(cfg, args.run_dir, test_after=not args.no_test)
    print_test_summary(summary.get("test"))
    return 0
