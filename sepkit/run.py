"""The composition root: a resolved :class:`RunConfig` becomes datasets, a model, an optimiser and a
:class:`Trainer`, and a run directory on disk. The CLI and the demo call these functions; nothing
else in sepkit needs to know how the pieces fit together.

Run directory layout::

    RUN_DIR/config.yaml          resolved config (every key, after overrides)
    RUN_DIR/train.log            log of every invocation
    RUN_DIR/metrics.csv          one row per training step (telemetry)
    RUN_DIR/valid.csv            one row per validation
    RUN_DIR/checkpoints/         ckpt-<step>.pt, best.pt, index.json
    RUN_DIR/bad_examples.csv     examples skipped by data.on_bad_example=skip
    RUN_DIR/test_results.csv     per-utterance metrics; test_summary.json
    RUN_DIR/audio/<id>/*.wav     saved separations
"""

from __future__ import annotations

import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, Dataset

from sepkit.config import ConfigError, build_dataclass, read_yaml_mapping, to_dict
from sepkit.data.batch import collate
from sepkit.data.sampler import ResumableSampler
from sepkit.models import build_model
from sepkit.models.io import load_state_checked, read_payload
from sepkit.recipe import RunConfig, save_config
from sepkit.training import distributed, runtime
from sepkit.training.config import OptimConfig
from sepkit.training.trainer import Trainer
from sepkit.utils.io import LockHeld, exclusive_lock, remove_stale_temp_files

log = logging.getLogger("sepkit")

# Keys that may change when a run is resumed: they set how long or how verbosely it runs, not
# what it computes.
RESUMABLE_CHANGES = {
    "train.epochs",
    "train.max_steps",
    "train.max_minutes",
    "train.progress_bar",
    "train.log_every",
    "train.checkpoint_every_steps",
    "train.checkpoint_every_minutes",
    "train.early_stopping_patience",
    "train.nonfinite_patience",
    "train.device",
    "train.save_audio",
    "train.n_audio_to_save",
    "train.average_best",  # which weights are tested; averaged.pt is rebuilt on resume
    "train.test_shifts",  # how the test pass runs the model, not what training computes
    "data.num_workers",
    "data.root",
    "threads",
    "description",
}


# Files the training process itself rewrites atomically in RUN_DIR: a process killed mid-write
# leaves their temporary siblings, which the next run of the same command deletes.
RUN_DIR_FILES = ("config.yaml", "metrics.csv", "valid.csv", "bad_examples.csv")


class RunLogHandler(logging.FileHandler):
    """``RUN_DIR/train.log``, which a full or read-only disk must not turn into a traceback per line.

    The logging module reports a failed write by printing a traceback to stderr and carrying on.
    Here the first failure is one warning and later ones are silent: the text log is a courtesy,
    while the metrics and checkpoint writes on the same disk fail loudly and stop the run.
    """

    def __init__(self, filename: Path) -> None:
        super().__init__(filename)
        self.failed = False

    def handleError(self, record: logging.LogRecord) -> None:
        err = sys.exc_info()[1]
        if not isinstance(err, OSError):
            super().handleError(record)
            return
        if not self.failed:
            self.failed = True
            print(
                f"sepkit: warning: cannot write {self.baseFilename} ({err.strerror or err}); "
                "logging to the console only",
                file=sys.stderr,
            )


def setup_logging(run_dir: Path | None, main_process: bool = True) -> None:
    """Console logging for every rank's warnings; ``RUN_DIR/train.log`` on rank 0."""
    logger = logging.getLogger("sepkit")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.INFO if main_process else logging.WARNING)
    console.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(console)
    if run_dir is not None and main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        file_handler = RunLogHandler(run_dir / "train.log")
        file_handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        logger.addHandler(file_handler)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: tree}


def check_resume_compatible(cfg: RunConfig, run_dir: Path) -> None:
    """Refuse to continue a run with settings that change what it computes."""
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file() or not (run_dir / "checkpoints").is_dir():
        return
    try:
        saved = _flatten(yaml.safe_load(saved_path.read_text()) or {})
    except yaml.YAMLError as err:
        raise ConfigError(f"{saved_path}: unreadable ({err}); use a new --run-dir") from err
    current = _flatten(to_dict(cfg))
    changed = sorted(
        key
        for key in set(saved) | set(current)
        if saved.get(key) != current.get(key) and key not in RESUMABLE_CHANGES
    )
    if changed:
        details = "; ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in changed[:8])
        raise ConfigError(
            f"{run_dir} holds a run with different settings ({details}). Resume with the same "
            "recipe and overrides, or start a new run with another --run-dir."
        )


def remove_interrupted_writes(run_dir: Path) -> None:
    """Delete the temporary files a killed run left next to its logs (checkpoints: see
    ``CheckpointManager.recover``). Only the process that owns the run directory calls it."""
    removed, failed = remove_stale_temp_files(run_dir, RUN_DIR_FILES)
    if removed:
        names = ", ".join(p.name for p in removed)
        log.info("removed %d temporary file(s) of interrupted writes: %s", len(removed), names)
    for message in failed:
        log.warning("cannot remove the temporary file of an interrupted write: %s", message)


def build_model_for_run(cfg: RunConfig) -> nn.Module:
    model = build_model(cfg.model, sample_rate=cfg.data.sample_rate)
    if cfg.init_from:
        payload = read_payload(cfg.init_from)
        load_state_checked(model, payload["model_state"], cfg.init_from)
        log.info("initialised model weights from %s", cfg.init_from)
    return model


def build_optimizer(cfg: OptimConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Adam(W) with the fused kernel wherever PyTorch has one for the parameters' device.

    Why fused: PyTorch's default on the CPU is a Python loop over the parameters (~10 small ops
    each); the fused kernel updates them all in one pass (docs/benchmarks.md).
    """
    cls = torch.optim.AdamW if cfg.name == "adamw" else torch.optim.Adam
    params = list(model.parameters())
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point for p in params)
    return cls(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, fused=fused)


def build_loader(
    cfg: RunConfig, split: str, *, train: bool, report_dir: Path | None
) -> DataLoader[Any]:
    """A DataLoader over one split with a resumable, rank-aware sampler."""
    from sepkit.data.dataset import build_dataset

    dataset: Dataset[Any] = build_dataset(
        cfg.data, split, train=train, seed=cfg.seed, report_dir=report_dir
    )
    sampler = ResumableSampler(
        len(dataset),  # type: ignore[arg-type]  # our datasets are sized
        seed=cfg.seed,
        shuffle=train,
        rank=distributed.rank(),
        world_size=distributed.world_size(),
    )
    return DataLoader(
        dataset,
        batch_size=cfg.data.batch_size if train else cfg.data.eval_batch_size,
        sampler=sampler,
        collate_fn=collate,
        num_workers=cfg.data.num_workers,
        worker_init_fn=runtime.worker_init_fn,
        # A private generator: creating an iterator must not consume the global RNG, or a
        # resumed run would draw different dropout masks than the uninterrupted one.
        generator=torch.Generator(),
        drop_last=train,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
    )


def make_trainer(cfg: RunConfig, run_dir: Path | None, model: nn.Module) -> Trainer:
    return Trainer(
        model,
        build_optimizer(cfg.optim, model),
        cfg.train,
        run_dir=run_dir,
        sample_rate=cfg.data.sample_rate,
        run_config=to_dict(cfg),
    )


#: Held by the training process for the whole run (sepkit.utils.io.exclusive_lock).
RUN_LOCK = ".lock"


def train(cfg: RunConfig, run_dir: Path, *, test_after: bool = True) -> dict[str, Any]:
    """Train (resuming if ``run_dir`` has checkpoints), then test the best checkpoint."""
    device = distributed.init_from_env(cfg.train.device)
    try:
        if device is not None:
            cfg = replace(cfg, train=replace(cfg.train, device=str(device)))
        return _train(cfg, run_dir, test_after=test_after)
    finally:
        distributed.shutdown()


def _train(cfg: RunConfig, run_dir: Path, *, test_after: bool) -> dict[str, Any]:
    if distributed.rank() != 0:  # rank 0 owns the run directory (and holds its lock)
        return _train_owned(cfg, run_dir, test_after=test_after)
    try:
        with exclusive_lock(run_dir / RUN_LOCK):
            return _train_owned(cfg, run_dir, test_after=test_after)
    except LockHeld as err:
        raise ConfigError(
            f"{run_dir}: in use by another sepkit process (pid {err.holder}); wait for it to end "
            "or choose another --run-dir"
        ) from None


def _train_owned(cfg: RunConfig, run_dir: Path, *, test_after: bool) -> dict[str, Any]:
    main = distributed.rank() == 0
    setup_logging(run_dir, main)
    runtime.set_threads(cfg.threads)
    check_resume_compatible(cfg, run_dir)
    if main:
        remove_interrupted_writes(run_dir)
        save_config(cfg, run_dir / "config.yaml")
    runtime.seed_everything(cfg.seed + distributed.rank())
    model = build_model_for_run(cfg)
    train_loader = build_loader(cfg, "train", train=True, report_dir=run_dir)
    valid_loader = build_loader(cfg, "valid", train=False, report_dir=run_dir)
    with make_trainer(cfg, run_dir, model) as trainer:
        summary = trainer.fit(train_loader, valid_loader)
    if main:
        log.info(
            "training stopped (%s) after %d steps, %d updates; %d skipped: %s",
            summary["stop_reason"],
            summary["steps"],
            summary["updates"],
            summary["nonfinite_count"],
            summary["skip_reasons"] or "none",
        )
    del trainer  # the DDP wrapper must go before the process group does
    if test_after:
        summary["test"] = evaluate(run_dir, cfg=cfg)
    return summary


def training_summary(run_dir: Path) -> dict[str, Any]:
    """What the newest checkpoint says about the training so far (steps, skips, time...)."""
    from sepkit.training.checkpoint import CheckpointManager, load_checkpoint

    checkpoints = CheckpointManager(run_dir / "checkpoints").list()
    if not checkpoints:
        raise FileNotFoundError(f"{run_dir}/checkpoints: no checkpoint; did training run?")
    counters = load_checkpoint(checkpoints[-1].path)["trainer"]
    return {
        "steps": counters["step"],
        "updates": counters["updates"],
        "epochs": counters["epoch"],
        "nonfinite_count": counters["nonfinite_count"],
        "skip_reasons": counters.get("skip_reasons", {}),
        "best_valid_loss": counters["best_valid"],
        "train_seconds": counters["train_seconds"],
    }


def load_run_config(run_dir: Path) -> RunConfig:
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir}: no config.yaml; is it a sepkit run directory?")
    return build_dataclass(RunConfig, read_yaml_mapping(path, "run config"))


def evaluate(
    run_dir: Path,
    *,
    cfg: RunConfig | None = None,
    split: str = "test",
    checkpoint: Path | None = None,
    save_audio: bool | None = None,
    n_audio_to_save: int | None = None,
    metrics: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Score the best (or a given) checkpoint on a split; writes ``test_results.csv``.

    "The best" is ``checkpoints/averaged.pt`` when the run averages checkpoints
    (``train.average_best`` > 1) and has two to average, else ``best.pt``. ``checkpoint`` may be
    a training checkpoint or a model file.
    """
    from sepkit.models.io import read_payload
    from sepkit.training.checkpoint import AVERAGED, CheckpointManager

    cfg = cfg or load_run_config(run_dir)
    train_cfg = cfg.train
    if save_audio is not None:
        train_cfg = replace(train_cfg, save_audio=save_audio)
    if n_audio_to_save is not None:
        train_cfg = replace(train_cfg, n_audio_to_save=n_audio_to_save)
    cfg = replace(cfg, train=train_cfg)
    if checkpoint is None:
        manager = CheckpointManager(run_dir / "checkpoints")
        best = manager.best() or (manager.list()[-1] if manager.list() else None)
        if best is None:
            raise FileNotFoundError(f"{run_dir}/checkpoints: no checkpoint to evaluate")
        checkpoint = best.path
        averaged = run_dir / "checkpoints" / AVERAGED
        if cfg.train.average_best > 1 and averaged.is_file():
            checkpoint = averaged
    state = read_payload(checkpoint)
    model = build_model(state["model_spec"] or cfg.model, sample_rate=cfg.data.sample_rate)
    load_state_checked(model, state["model_state"], checkpoint)
    loader = build_loader(cfg, split, train=False, report_dir=run_dir)
    sources = state.get("averaged_from")
    what = f" (mean of {', '.join(sources)})" if sources else ""
    log.info("evaluating %s%s on the %s split", checkpoint.name, what, split)
    with make_trainer(cfg, run_dir, model) as trainer:
        summary = trainer.test(loader, metrics)
    if distributed.rank() == 0:
        summary.update(_describe_test(run_dir, cfg, loader.dataset))
    return summary


def _describe_test(run_dir: Path, cfg: RunConfig, dataset: Any) -> dict[str, Any]:
    """Which test set the figures come from, and their means by gender pair, added to
    ``test_summary.json`` so that every reader of a figure can tell what it measures."""
    from sepkit.evaluation.groups import add_to_summary, describe_test_set, gender_pair, group_means
    from sepkit.evaluation.results import RESULTS_CSV, SUMMARY_JSON, read_results

    records = getattr(dataset, "records", [])
    speakers = {s for r in records for s in r.speakers}
    root = Path(cfg.data.root).expanduser() if cfg.data.root else Path.cwd()
    extra: dict[str, Any] = {
        "test_set": describe_test_set(root, cfg.data.test_split, len(speakers))
    }
    pairs = {r.id: gender_pair(r.genders) for r in records if r.genders}
    if pairs and (run_dir / RESULTS_CSV).is_file():
        rows, _ = read_results(run_dir / RESULTS_CSV)
        extra["by_gender_pair"] = group_means(rows, pairs)
    if (run_dir / SUMMARY_JSON).is_file():
        add_to_summary(run_dir / SUMMARY_JSON, extra)
    return extra
