"""Recipes, dotted overrides and the errors that name the offending key."""

from __future__ import annotations

from pathlib import Path

import pytest

from sepkit.config import ConfigError, parse_override, to_dict
from sepkit.recipe import load_recipe

ROOT = Path(__file__).parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_defaults_and_overrides(tmp_path: Path) -> None:
    recipe = write(tmp_path, "train:\n  threshold: -25\ndata:\n  batch_size: 2\n")
    cfg = load_recipe(recipe, ["train.clip_grad_norm=-1", "data.batch_size=8", "seed=3"])
    assert cfg.train.threshold == -25.0 and isinstance(cfg.train.threshold, float)
    assert cfg.train.clip_grad_norm == -1.0
    assert cfg.data.batch_size == 8
    assert cfg.seed == 3
    assert cfg.train.threshold_byloss is True  # seed default kept
    assert cfg.train.loss_upper_lim == 999999.0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.treshold=-20", "train.treshold: unknown key (did you mean 'threshold'?)"),
        ("trian.threshold=-20", "trian: unknown key (did you mean 'train'?)"),
        ("train.threshold=abc", "train.threshold: expected a number, got 'abc'"),
        ("train.threshold_byloss=3", "train.threshold_byloss: expected true or false"),
        ("data.batch_size=2.5", "data.batch_size: expected an integer"),
        ("train.precision=fp8", "train.precision: expected one of 'fp32' | 'fp16' | 'bf16'"),
        ("data.batch_size=0", "data.batch_size: must be >= 1"),
        ("train.threshold", "expected key=value"),
        ("model.name=transformerx", "model.name: unknown model 'transformerx'"),
    ],
)
def test_bad_overrides_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_recipe(None, [override])
    assert message in str(err.value)


@pytest.mark.parametrize(
    "override",
    [
        "data.batch_size=0",
        "data.eval_batch_size=0",
        "train.grad_accumulation=0",
        "train.max_steps=0",
        "train.max_minutes=0",
        "train.warmup_steps=-1",
        "model.N=0",
    ],
)
def test_invalid_values_name_the_key_as_written(override: str) -> None:
    """Each validator's message starts with the dotted key exactly as the user writes it (not
    ``data.data.batch_size``, not ``data.batch_size`` for ``data.eval_batch_size``)."""
    key = override.split("=")[0]
    with pytest.raises(ConfigError) as err:
        load_recipe(None, ["model.name=convtasnet", override])
    assert str(err.value).startswith(f"{key}: must be"), str(err.value)


def test_unknown_key_in_recipe_file(tmp_path: Path) -> None:
    recipe = write(tmp_path, "optim:\n  learning_rate: 0.01\n")
    with pytest.raises(ConfigError, match=r"optim.learning_rate: unknown key"):
        load_recipe(recipe)


def test_broken_yaml_names_the_file(tmp_path: Path) -> None:
    recipe = write(tmp_path, "train: [unclosed\n")
    with pytest.raises(ConfigError, match=r"recipe.yaml: not valid YAML \(line 2, column 1: "):
        load_recipe(recipe)
    recipe.write_bytes(b"description: caf\xe9\n")  # Latin-1, not UTF-8
    with pytest.raises(ConfigError, match=r"recipe.yaml: not valid YAML"):
        load_recipe(recipe)
    recipe.write_text("- a list\n")
    with pytest.raises(ConfigError, match=r"recipe.yaml: top level must be a mapping"):
        load_recipe(recipe)


def test_missing_recipe_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope.yaml: file not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_override_values_are_yaml() -> None:
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])
    assert parse_override("a=null") == ("a", None)
    assert parse_override("a=x=y") == ("a", "x=y")


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    import yaml

    cfg = load_recipe(None, ["data.speed_perturb_range=[0.9, 1.1]", "train.max_minutes=2"])
    text = yaml.safe_dump(to_dict(cfg))
    again = load_recipe(write(tmp_path, text))
    assert again == cfg


def test_every_shipped_recipe_loads() -> None:
    recipes = sorted((Path(__file__).parents[2] / "recipes").glob("*.yaml"))
    assert recipes, "no recipes shipped"
    for recipe in recipes:
        load_recipe(recipe)


def test_model_outputs_must_match_the_data_targets(tmp_path: Path) -> None:
    """A model with too few or too many outputs is refused at load, naming model.num_spks,
    not found as a shape error inside the first loss."""
    with pytest.raises(ValueError, match=r"model.num_spks: 3, but the data gives 2"):
        load_recipe(ROOT / "recipes" / "demo.yaml", ["model.num_spks=3"])
    with pytest.raises(ValueError, match=r"gives 3 target signals .*noise_as_source"):
        load_recipe(ROOT / "recipes" / "demo-noisy.yaml", ["data.noise_as_source=true"])
    load_recipe(
        ROOT / "recipes" / "demo-noisy.yaml", ["data.noise_as_source=true", "model.num_spks=3"]
    )
