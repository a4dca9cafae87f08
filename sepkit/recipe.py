"""A training run's recipe: the :class:`RunConfig` a YAML file and ``key=value`` overrides fill.

It composes the sections that each package owns (``data``: :class:`DataConfig`, ``train`` and
``optim``: the trainer's, ``model``: a mapping checked by the model registry) and sits above them;
the generic machinery it uses (:mod:`sepkit.config`) sits below everything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sepkit.config import ConfigError, apply_overrides, build_dataclass, read_yaml_mapping, to_dict
from sepkit.data.config import DataConfig
from sepkit.training.config import OptimConfig, TrainConfig
from sepkit.utils.io import atomic_write_text


@dataclass
class RunConfig:
    """Everything one training run needs; saved resolved as ``config.yaml`` in the run directory.

    ``model`` stays a mapping here (``name`` plus that model's parameters) and is checked against the
    model's own typed config by :func:`sepkit.models.model_config_from_dict`, so each model owns its
    parameters and this module need not know them.
    """

    model: dict[str, Any] = field(default_factory=lambda: {"name": "convtasnet", "preset": "small"})
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    seed: int = 0
    # torch intra-op threads; 0 = sepkit's default (see sepkit.training.runtime.default_threads).
    threads: int = 0
    # A checkpoint (or SpeechBrain import) whose model weights initialise a new run (fine-tuning).
    init_from: str | None = None
    description: str = ""

    def validate(self) -> None:
        from sepkit.losses import build_objective
        from sepkit.models import model_config_from_dict

        try:
            _, model_cfg = model_config_from_dict(self.model)
        except ConfigError as err:
            raise ValueError(str(err)) from err
        self._check_source_count(model_cfg)
        build_objective(self.train.loss, self.train.pit_method)  # a bad train.loss, named now
        if self.threads < 0:
            raise ValueError("threads: must be >= 0")

    def _check_source_count(self, model_cfg: object) -> None:
        """The model must estimate as many signals as the data gives as targets; found here,
        not as a shape error in the first loss."""
        outputs = model_cfg.get("num_spks") if isinstance(model_cfg, dict) else None
        outputs = getattr(model_cfg, "num_spks", outputs)
        noise_as_source = bool(getattr(self.data, "noise_as_source", False))
        targets = self.data.num_spks + int(noise_as_source)
        if isinstance(outputs, int) and outputs != targets:
            because = " + the noise (data.noise_as_source)" if noise_as_source else ""
            raise ValueError(
                f"model.num_spks: {outputs}, but the data gives {targets} target signals "
                f"(data.num_spks: {self.data.num_spks}{because})"
            )


def load_recipe(path: str | Path | None, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a YAML recipe (or start from defaults when ``path`` is None), apply overrides, validate."""
    raw = read_yaml_mapping(Path(path), "recipe") if path is not None else {}
    raw = apply_overrides(raw, overrides)
    return build_dataclass(RunConfig, raw)


def save_config(cfg: RunConfig, path: Path) -> None:
    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
