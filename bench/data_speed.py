"""Row 5: data loading throughput (static and dynamic mixing) vs what a training step consumes.

A small wsj0-2mix-layout corpus (``train/{mix,s1,s2}/<id>.wav``, 8 kHz, speech-like synthetic
signals of 3-6 s) is written to a temporary folder and read through ``sepkit.data.build_dataset``
(validation included) and a ``DataLoader`` with ``sepkit.data.collate``: 2 s random crops, batch
4, in the main process (``num_workers=0``, 1 thread: the worst case). Candidates, interleaved,
one batch per call: static mixtures read from disk, dynamic mixing (new mixtures from the
single-speaker sources), dynamic mixing with speed perturbation, and the SepFormer training step
of row 2 on such a batch. "headroom" = step time / loading time: how many times faster one
process loads batches than the step consumes them (>= 1: loading is not the bottleneck).

    python bench/data_speed.py [--threads 1] [--quick]
"""

from __future__ import annotations

import itertools
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import base_parser, interleaved_medians, machine_line, print_table

RATE = 8000
CROP = 16000  # 2 s, as in row 2
BATCH = 4


def speech_like(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Harmonic voice with a gliding pitch, gated into syllables (enough for I/O and mixing)."""
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = rng.uniform(90, 250) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * t))
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    gate = np.sin(2 * np.pi * rng.uniform(2, 5) * t) > -0.3
    return (0.1 * voice * gate + 0.003 * rng.standard_normal(t.size)).astype(np.float32)


def write_corpus(root: Path, count: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for sub in ("mix", "s1", "s2"):
        (root / "train" / sub).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        seconds = rng.uniform(3.0, 6.0)
        s1, s2 = speech_like(rng, seconds), speech_like(rng, seconds)
        name = f"utt{i:04d}.wav"
        for sub, x in (("s1", s1), ("s2", s2), ("mix", s1 + s2)):
            sf.write(root / "train" / sub / name, x, RATE, subtype="PCM_16")


def loader_step(root: Path, **options: object) -> Callable[[], object]:
    """A callable returning the next batch of an endless, freshly shuffled loader."""
    from torch.utils.data import DataLoader

    from sepkit.data import DataConfig, build_dataset, collate

    cfg = DataConfig(
        root=str(root),
        format="wsj0-mix",
        sample_rate=RATE,
        training_signal_len=CROP,
        batch_size=BATCH,
        **options,  # type: ignore[arg-type]
    )
    dataset = build_dataset(cfg, "train", train=True, seed=0, cache_path=root / "cache.json")

    def batches() -> Iterator[object]:
        for epoch in itertools.count():
            dataset.set_epoch(epoch)
            gen = torch.Generator().manual_seed(epoch)
            yield from DataLoader(
                dataset, batch_size=BATCH, shuffle=True, collate_fn=collate, generator=gen
            )

    stream = batches()
    return lambda: next(stream)


def main() -> None:
    args = base_parser(__doc__.splitlines()[0]).parse_args()
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 10)
    with tempfile.TemporaryDirectory(prefix="sepkit-data-bench-") as tmp:
        root = Path(tmp)
        write_corpus(root, 12 if args.quick else 48)
        candidates: dict[str, Callable[[], object]] = {}
        notes: list[str] = []
        for name, options in (
            ("static mixtures", {}),
            ("dynamic mixing", {"dynamic_mixing": True}),
            (
                "dynamic mixing + speed perturbation",
                {"dynamic_mixing": True, "speed_perturb": True},
            ),
        ):
            try:
                candidates[name] = loader_step(root, **options)
            except (ImportError, AttributeError, TypeError) as err:
                notes.append(f"{name}: pending ({type(err).__name__}: {err})")
        from sepformer_pair import sepkit_model, sepkit_trainer

        from sepkit.data import Batch

        trainer = sepkit_trainer(sepkit_model("small"), None)
        sources = 0.1 * torch.randn(BATCH, 2, CROP, generator=torch.Generator().manual_seed(0))
        batch = Batch(sources.sum(1), sources)
        candidates["training step (SepFormer small)"] = lambda: trainer.fit_batch(batch)
        medians = interleaved_medians(candidates, repeats, warmup=1)
    step = medians.pop("training step (SepFormer small)")
    rows = [
        [name, f"{sec * 1e3:.1f}", f"{BATCH / sec:.0f}", f"{step / sec:.0f}x"]
        for name, sec in medians.items()
    ]
    rows.append(
        ["training step (SepFormer small, row 2)", f"{step * 1e3:.0f}", f"{BATCH / step:.1f}", "-"]
    )
    print(
        f"Data loading, batch {BATCH} x {CROP / RATE:g} s crops at {RATE} Hz, one process "
        f"(num_workers=0), median of {repeats} interleaved batches — {machine_line(args.threads)}"
    )
    print()
    print_table(["source of batches", "ms / batch", "examples / s", "headroom vs step"], rows)
    for note in notes:
        print(f"\n{note}")


if __name__ == "__main__":
    main()
