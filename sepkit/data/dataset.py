"""The torch Dataset the trainer reads, and :func:`build_dataset`, which validates before returning.

Reproducibility contract: ``dataset[index]`` depends only on (seed, epoch set by ``set_epoch``,
index). Random crops, speed factors and dynamic mixtures are drawn from a generator seeded with
those numbers, never from global RNG, so the examples are the same whatever the number of
data-loader workers, on every DDP rank that receives the index, and after a mid-epoch resume.
Call ``set_epoch`` before creating the epoch's iterator (workers are forked with the dataset's
state; with ``persistent_workers=True`` they would keep the epoch they started with).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from sepkit.data.augment import (
    STREAM_CROP,
    STREAM_MIX,
    STREAM_SPEED,
    crop_window,
    example_rng,
    perturb_speed,
    speed_factor,
)
from sepkit.data.batch import Example
from sepkit.data.config import DataConfig
from sepkit.data.corpus import Record, load_records
from sepkit.data.dynamic_mixing import DynamicMixer
from sepkit.data.errors import DataError, Problem, format_problems, write_bad_examples
from sepkit.data.validate import FactsCache, check_records, default_cache_path, inspect_all

__all__ = ["DataError", "SeparationDataset", "build_dataset"]

log = logging.getLogger(__name__)


class SeparationDataset(Dataset[Example]):
    """Examples of one split: ``mix [T]``, ``sources [C, T]``, ``noise [T]`` or None (float32)."""

    def __init__(
        self,
        records: list[Record],
        frames: dict[Path, int],
        cfg: DataConfig,
        *,
        train: bool,
        seed: int,
        mixer: DynamicMixer | None = None,
        length: int | None = None,
        utterances: bool = False,
    ) -> None:
        self.records = records
        self.length = len(records) if length is None else length
        # Records of single utterances (layout "utterances") only feed the mixer: an example's ID
        # then names its speakers and where it comes from, (epoch, index), which reproduces it.
        self.utterances = utterances and mixer is not None
        self.lengths = [frames[r.mix] for r in records]
        self.cfg = cfg
        self.train = train
        self.seed = seed
        self.epoch = 0
        self.mixer = mixer
        self.crop = cfg.training_signal_len if train and cfg.limit_training_signal_len else None
        self.speed = cfg.speed_perturb_range if train and cfg.speed_perturb else None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def _rng(self, index: int, stream: int) -> np.random.Generator:
        return example_rng(self.seed, self.epoch, index, stream)

    def __getitem__(self, index: int) -> Example:
        if self.mixer is not None:
            sources, noise, speakers = self.mixer.make(self._rng(index, STREAM_MIX), self.crop)
            mix = sources.sum(axis=0) + (noise if noise is not None else 0.0)
            rid = self.records[index % len(self.records)].id
            if self.utterances:
                rid = f"{'+'.join(speakers)}@epoch{self.epoch}:{index}"
            return _example(rid, mix, sources, noise)
        rec = self.records[index]
        with_noise = self.cfg.use_noise and rec.noise is not None
        files = [rec.mix, *rec.sources, *([rec.noise] if with_noise and rec.noise else [])]
        factor = 1.0
        if self.speed is not None:
            factor = speed_factor(self._rng(index, STREAM_SPEED), *self.speed)
        start, stop = 0, self.lengths[index]
        if self.crop is not None:
            need = math.ceil(self.crop * factor) + (8 if factor != 1.0 else 0)
            start, stop = crop_window(self._rng(index, STREAM_CROP), self.lengths[index], need)
        tracks = np.stack([_read(p, start, stop) for p in files], axis=1)  # [T, K]
        if factor != 1.0:
            tracks = perturb_speed(tracks, factor, self.cfg.sample_rate)
            if self.crop is not None:
                tracks = tracks[: self.crop]
        n_src = len(rec.sources)
        noise = tracks[:, 1 + n_src] if with_noise else None
        return _example(rec.id, tracks[:, 0], tracks[:, 1 : 1 + n_src].T, noise)


def _read(path: Path, start: int, stop: int) -> np.ndarray:
    data, _ = sf.read(str(path), start=start, stop=stop, dtype="float32", always_2d=False)
    return np.asarray(data, dtype=np.float32)


def _example(rid: str, mix: np.ndarray, sources: np.ndarray, noise: np.ndarray | None) -> Example:
    return Example(
        id=rid,
        mix=torch.from_numpy(np.ascontiguousarray(mix, dtype=np.float32)),
        sources=torch.from_numpy(np.ascontiguousarray(sources, dtype=np.float32)),
        noise=None if noise is None else torch.from_numpy(np.ascontiguousarray(noise, np.float32)),
    )


def build_dataset(
    cfg: DataConfig,
    split: str,
    *,
    train: bool,
    seed: int,
    report_dir: Path | None = None,
    cache_path: Path | None = None,
) -> SeparationDataset:
    """Find, validate and wrap one split (``"train"``, ``"valid"`` or ``"test"``).

    Every file is checked before this returns (see :mod:`sepkit.data.validate`). All problems are
    collected; then either :class:`DataError` lists them (``data.on_bad_example=error``) or the bad
    examples are dropped (``skip``). Either way ``report_dir/bad_examples.csv`` records them
    (id, file, problem) when ``report_dir`` is given. ``cache_path`` overrides where the per-file
    validation cache lives (default: ``<root>/.sepkit/`` or ``~/.cache/sepkit/validation/``).
    """
    records, problems, layout = load_records(cfg, split)
    if cfg.max_examples > 0:
        records = records[: cfg.max_examples]
    if not records and not problems:
        raise DataError(f"data split {split!r} ({layout}): lists no examples")
    utterances = layout.startswith("utterances:")
    if utterances and not train:
        raise DataError(
            f"data split {split!r} ({layout}) lists single-speaker recordings, which only the "
            "training split can mix on the fly; validation and test need fixed mixtures (sepkit "
            "prepare writes them), so that their scores are reproducible"
        )
    counts = {len(r.sources) for r in records}
    if records and not utterances and counts != {cfg.num_spks}:
        raise DataError(
            f"{layout}: examples have {sorted(counts)} sources, data.num_spks={cfg.num_spks}; "
            "set data.num_spks to the corpus's number of sources (s1..sC)",
            [Problem("-", layout, f"source count {sorted(counts)} != {cfg.num_spks}")],
        )
    root = Path(cfg.root).expanduser() if cfg.root else Path.cwd()
    cache = FactsCache(cache_path or default_cache_path(root, layout))
    paths = [p for r in records for p in (r.mix, *r.sources, *([r.noise] if r.noise else []))]
    facts = inspect_all(paths, cache)
    cache.save()
    problems += check_records(records, facts, cfg.sample_rate, cfg.use_noise)
    if problems:
        if report_dir is not None:
            write_bad_examples(Path(report_dir) / "bad_examples.csv", problems)
        # A duplicate's first occurrence is kept (the later ones were already dropped).
        bad = {p.id for p in problems if not p.problem.startswith("duplicate id")}
        n_bad = len({p.id for p in problems})
        where = f" (listed in {Path(report_dir) / 'bad_examples.csv'})" if report_dir else ""
        if cfg.on_bad_example == "error":
            header = (
                f"data split {split!r} ({layout}): {n_bad} bad example(s), {len(problems)} "
                f"problem(s){where}. Fix them, or set data.on_bad_example=skip to leave them out:"
            )
            raise DataError(format_problems(header, problems), problems)
        records = [r for r in records if r.id not in bad]
        log.warning("data split %r: skipped %d bad example(s)%s", split, n_bad, where)
    if not records:
        raise DataError(f"data split {split!r} ({layout}): no usable examples left")
    frames = {p: f.frames for p, f in facts.items()}
    mixer = None
    if train and (cfg.dynamic_mixing or utterances):
        mixer = DynamicMixer(
            records,
            frames,
            cfg.num_spks,
            cfg.sample_rate,
            gain_db=cfg.mix_gain_db,
            speed_range=cfg.speed_perturb_range if cfg.speed_perturb else None,
            random_polarity=cfg.random_polarity,
            use_noise=cfg.use_noise,
        )
    length = cfg.mixtures_per_epoch if mixer is not None and cfg.mixtures_per_epoch else None
    return SeparationDataset(
        records,
        frames,
        cfg,
        train=train,
        seed=seed,
        mixer=mixer,
        length=length,
        utterances=utterances,
    )
