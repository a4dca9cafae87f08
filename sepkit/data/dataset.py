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
    STREAM_NOISE,
    STREAM_ROOM,
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
from sepkit.data.noise import NoisePool, NoiseSegment
from sepkit.data.reverb import TrainingRooms, reverberant_mix, training_rooms
from sepkit.data.validate import (
    FactsCache,
    FileFacts,
    check_records,
    default_cache_path,
    inspect_all,
)

__all__ = ["DataError", "SeparationDataset", "build_dataset"]

log = logging.getLogger(__name__)


class SeparationDataset(Dataset[Example]):
    """Examples of one split: ``mix [T]``, ``sources [C, T]``, ``noise [T]`` or None (float32).

    With a ``noise`` pool (training only) every example gets noise drawn from its own generator
    (stream :data:`~sepkit.data.augment.STREAM_NOISE`): on-the-fly mixtures and crops of fixed
    mixtures draw exactly what they draw without noise, and ``mix = sum(sources) + noise``.
    With ``rooms`` (on-the-fly training mixtures only) the dry sources are played in a room drawn
    from stream :data:`~sepkit.data.augment.STREAM_ROOM`: the mixture is the sum of the
    reverberant sources (+ noise), the targets the room's (:mod:`sepkit.data.reverb`).
    """

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
        noise: NoisePool | None = None,
        rooms: TrainingRooms | None = None,
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
        self.noise = noise
        self.rooms = rooms if mixer is not None else None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def _rng(self, index: int, stream: int) -> np.random.Generator:
        return example_rng(self.seed, self.epoch, index, stream)

    def __getitem__(self, index: int) -> Example:
        if self.mixer is not None:
            sources, speakers = self.mixer.make(self._rng(index, STREAM_MIX), self.crop)
            if self.rooms is not None:
                responses = self.rooms.draw(self._rng(index, STREAM_ROOM))
                noise_rng = self._rng(index, STREAM_NOISE) if self.noise is not None else None
                rev = reverberant_mix(sources, responses, self.noise, noise_rng)
                mix, sources, noise = rev.mix, rev.targets, rev.noise
            else:
                noise = None
                if self.noise is not None:
                    noisy = self.noise.add(self._rng(index, STREAM_NOISE), sources)
                    sources, noise = noisy.sources, noisy.noise
                mix = sources.sum(axis=0) + (noise if noise is not None else 0.0)
            rid = self.records[index % len(self.records)].id
            if self.utterances:
                rid = f"{'+'.join(speakers)}@epoch{self.epoch}:{index}"
            return self._example(rid, mix, sources, noise)
        rec = self.records[index]
        # The corpus's noise track, unless sepkit adds its own (never both: build_dataset).
        with_noise = self.cfg.noisy and rec.noise is not None and self.noise is None
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
        mix, sources = tracks[:, 0], tracks[:, 1 : 1 + n_src].T
        noise = tracks[:, 1 + n_src] if with_noise else None
        if self.noise is not None:
            noisy = self.noise.add(self._rng(index, STREAM_NOISE), sources, mix)
            mix, sources, noise = noisy.mix, noisy.sources, noisy.noise
        return self._example(rec.id, mix, sources, noise)

    def _example(
        self, rid: str, mix: np.ndarray, sources: np.ndarray, noise: np.ndarray | None
    ) -> Example:
        if self.cfg.noise_as_source:  # the noise is one more source to estimate
            if noise is None:
                raise DataError(f"{rid}: no noise to add as a source (data.noise_as_source)")
            sources = np.concatenate([sources, noise[None, :]], axis=0)
        return _example(rid, mix, sources, noise)


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
    problems += check_records(records, facts, cfg.sample_rate, cfg.noisy)
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
        )
    noise = _noise_pool(cfg, records, facts, layout, mixer is not None) if train else None
    _check_noise_tracks(cfg, split, layout, records, train, noise)
    rooms = None
    if train and cfg.reverb:
        if mixer is None:
            raise DataError(
                f"data.reverb: the training split ({layout}) holds fixed mixtures, made before "
                "any room; reverberation is added to mixtures sepkit makes on the fly: set "
                "data.dynamic_mixing=true (or read a reverberant corpus's own mixtures: "
                "data.mix_folder, e.g. WHAMR!'s mix_both_reverb)"
            )
        rooms = training_rooms(cfg, seed, root)
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
        noise=noise,
        rooms=rooms,
    )


def _noise_pool(
    cfg: DataConfig, records: list[Record], facts: dict[Path, FileFacts], layout: str, dynamic: bool
) -> NoisePool | None:
    """The training noise: ``data.noise``'s pool (the training part of each recording), else,
    when the split is remixed on the fly with ``data.use_noise``, the corpus's own noise tracks
    (already validated with the split; silent ones left out, short ones never drawn)."""
    if cfg.noise != "none":
        if not dynamic and cfg.use_noise:
            raise DataError(
                "data.noise: the training split's fixed mixtures already hold the corpus's noise "
                "(data.use_noise=true); adding more would change their SNR. Set one of them"
            )
        need = cfg.training_signal_len if cfg.limit_training_signal_len else None
        return NoisePool.load(cfg.noise, "train", cfg.sample_rate, cfg.noise_snr_db, need=need)
    if not (cfg.use_noise and dynamic):
        return None
    tracks = {r.noise: facts[r.noise] for r in records if r.noise is not None}
    segments = [
        NoiseSegment(p, f.rate, 0, f.frames, f.frames)
        for p, f in tracks.items()
        if not f.error and not f.silent and f.frames > 0
    ]
    if not segments:
        raise DataError(
            f"data.use_noise: the training split ({layout}) has no noise tracks to remix; "
            "set data.noise=shipped (or a folder of noise recordings), or data.use_noise=false"
        )
    return NoisePool(segments, cfg.sample_rate, cfg.noise_snr_db)


def _check_noise_tracks(
    cfg: DataConfig,
    split: str,
    layout: str,
    records: list[Record],
    train: bool,
    noise: NoisePool | None,
) -> None:
    """Every example of a run with ``data.noise_as_source`` needs noise; and a noisy training
    run scored on clean mixtures is worth a warning, not an error (it may be meant)."""
    if noise is not None:
        return
    missing = [r.id for r in records if r.noise is None]
    if cfg.noise_as_source and missing:
        raise DataError(
            f"data.noise_as_source: {len(missing)} example(s) of split {split!r} ({layout}) have "
            f"no noise track (first: {missing[0]}); a noisy corpus (WHAM!, Libri2Mix mix_both, "
            "sepkit prepare --noise) has one per mixture"
        )
    if not train and cfg.noise != "none" and len(missing) == len(records):
        log.warning(
            "data.noise=%s adds noise in training, but split %r (%s) holds clean mixtures: its "
            "scores are for clean speech (sepkit prepare --noise makes noisy ones)",
            cfg.noise,
            split,
            layout,
        )
