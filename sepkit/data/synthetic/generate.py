"""``sepkit prepare-demo``: a multi-speaker corpus made offline from eSpeak NG speech.

The output has the wsj0-2mix / Libri2Mix layout (``DIR/{train,valid,test}/{mix,s1,s2,...}/<id>.wav``
plus a manifest ``DIR/<split>.csv``), so everything downstream reads it exactly like a real corpus.

How it is made, and why:

1. *Plan* (main process, from the seed only): speakers per split (voice families disjoint across
   splits), a pool of utterances per speaker (sentences from a small grammar with SSML pauses,
   per-utterance rate/pitch jitter) and the mixtures (speakers drawn without replacement, gains,
   onsets). Everything random is decided here, so the files do not depend on worker scheduling.
2. *Synthesize* the utterances missing from the cache (``DIR/.utterance-cache``) in worker
   processes. eSpeak NG keeps synthesis state between calls (pitch phase, flutter, echo), so the same
   text comes out slightly different depending on what was spoken before. Each utterance is
   therefore synthesized in a process forked from a worker whose library is freshly initialised:
   every utterance starts from the same state and the corpus is byte-identical from run to run.
3. *Mix* in worker processes: resample 22.05 kHz -> 8/16 kHz (exact polyphase), level-normalise,
   place with onsets ("min": truncate to the shortest, "max": pad to the union with a target
   overlap), apply gains uniform in ±``gain_db`` relative to the first speaker (wsj0-2mix), add an
   optional WHAM-like noise, scale everything by one factor to avoid clipping, quantise the sources
   to 16 bit and write the mixture as their exact integer sum (so ``mix == sum(sources)`` holds
   after writing, not just before).
"""

from __future__ import annotations

import ctypes
import json
import math
import multiprocessing as mp
import os
import shutil
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from sepkit.data import audio
from sepkit.data.synthetic import synth
from sepkit.data.synthetic.plan import (
    CorpusSpec,
    MixPlan,
    UttPlan,
    plan_split,
)
from sepkit.data.synthetic.speakers import SPLITS, Speaker
from sepkit.utils.io import atomic_write_csv, atomic_write_text

CORPUS_FORMAT = "sepkit-espeak-corpus"
#: 2: family split stratified by synthesiser (speakers.family_splits); 3: a mixture's speakers come
#: from different families (``draw_distinct_voices``).
CORPUS_VERSION = 3
CACHE_DIR = ".utterance-cache"
#: Active speech level each utterance is normalised to before gains (dB re full scale).
SPEECH_LEVEL_DB = -25.0
PEAK = 0.9


# ------------------------------------------------------------------------------- synthesizing

_LIBC: Any = None


def _srand(seed: int) -> None:
    """eSpeak's Klatt voices draw noise from libc ``rand()``: seed it per utterance."""
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL(None)
        except OSError:
            _LIBC = False
    if _LIBC:
        _LIBC.srand(ctypes.c_uint(seed))


def _synth_to_cache(utt: UttPlan, cache: Path) -> None:
    """Synthesize ``utt`` into ``cache/<key>.npy`` (int16 at 22.05 kHz), from a fresh state."""
    target = cache / f"{utt.key}.npy"
    if target.exists():
        return
    tmp = cache / f".{utt.key}.{os.getpid()}.npy"
    err = cache / f".{utt.key}.{os.getpid()}.err"
    backend = synth.backend()  # initialise before forking so the child starts from this state
    if not hasattr(os, "fork") or not isinstance(backend, synth._LibraryBackend):
        # The command-line fallback starts a new process per call anyway; no fork needed.
        np.save(tmp, synth.synthesize(utt.ssml, utt.voice))
        os.replace(tmp, target)
        return
    pid = os.fork()
    if pid == 0:  # child: synthesize once, write, leave without running any Python cleanup
        code = 0
        try:
            _srand(int(utt.key[:8], 16))
            np.save(tmp, synth.synthesize(utt.ssml, utt.voice))
            os.replace(tmp, target)
        except BaseException as exc:  # reported to the parent through a file
            err.write_text(f"{type(exc).__name__}: {exc}")
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if status != 0 or not target.exists():
        msg = err.read_text() if err.exists() else f"synthesis process ended with status {status}"
        err.unlink(missing_ok=True)
        raise synth.SynthError(f"utterance {utt.key} ({utt.voice.name}): {msg}")


def _synth_chunk(args: tuple[list[UttPlan], str]) -> int:
    utts, cache = args
    for utt in utts:
        _synth_to_cache(utt, Path(cache))
    return len(utts)


# ------------------------------------------------------------------------------------ mixing


def _load_utterance(utt: UttPlan, cache: Path, spec: CorpusSpec) -> np.ndarray:
    """Cached 22.05 kHz int16 -> trimmed, resampled, coloured, level-normalised float32."""
    raw = np.load(cache / f"{utt.key}.npy").astype(np.float32) / 32768.0
    x = audio.trim_silence(raw, synth.NATIVE_RATE)
    x = audio.resample_exact(x, synth.NATIVE_RATE, spec.sample_rate)
    x = audio.cut_at_pause(x, spec.sample_rate, int(spec.utterance_seconds[1] * spec.sample_rate))
    if utt.emphasis > 0:
        from scipy.signal import lfilter  # lazy: scipy.signal costs ~1 s of CLI start-up

        x = lfilter([1.0, -utt.emphasis], [1.0], x).astype(np.float32)
    if len(x) == 0:
        raise synth.SynthError(f"utterance {utt.key} ({utt.voice.name}) came out silent")
    level = audio.active_rms(x, spec.sample_rate)
    return (x * (10 ** (SPEECH_LEVEL_DB / 20) / level)).astype(np.float32)


def _place(
    lengths: Sequence[int], spec: CorpusSpec, target: float, rng: np.random.Generator
) -> tuple[list[int], int]:
    """Onsets (samples) of each source and the mixture length, by mode."""
    if spec.mode == "min":
        max_onset = int(spec.max_onset_s * spec.sample_rate)
        onsets = [int(rng.integers(0, max_onset + 1)) for _ in lengths]
        onsets[int(rng.integers(len(onsets)))] = 0
        total = min(o + n for o, n in zip(onsets, lengths, strict=True))
        return onsets, max(total, 1)
    onsets = [0]
    start, end = 0, lengths[0]
    for n in lengths[1:]:
        span = end - start
        ov = round(target * min(n, span))
        if ov >= n:  # fits entirely inside the current span
            o = start + int(rng.integers(0, span - n + 1))
        elif rng.random() < 0.5:
            o = end - ov  # enters before the others finish
        else:
            o = start - (n - ov)  # starts first, the others come in
        onsets.append(o)
        start, end = min(start, o), max(end, o + n)
    return [o - start for o in onsets], end - start


def _make_noise(
    plan: MixPlan, length: int, spec: CorpusSpec, cache: Path, rng: np.random.Generator
) -> np.ndarray:
    """WHAM!-like background: coloured, slowly modulated noise plus reversed distant babble."""
    noise = audio.colored_noise(rng, length, float(rng.uniform(-6.0, -1.0)))
    t = np.arange(length) / spec.sample_rate
    noise *= 1.0 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.05, 0.5) * t + rng.uniform(0, 2 * np.pi))
    babble = np.zeros(length, dtype=np.float32)
    for utt in plan.babble:
        u = _load_utterance(utt, cache, spec)[::-1]
        reps = np.tile(u, length // max(len(u), 1) + 2)
        shift = int(rng.integers(len(u)))
        babble += reps[shift : shift + length]
    b_rms = np.sqrt(np.mean(babble**2)) + 1e-12
    noise = noise + babble / b_rms * float(rng.uniform(0.3, 1.0))
    return (noise / (np.sqrt(np.mean(noise**2)) + 1e-12)).astype(np.float32)


def _mix_one(plan: MixPlan, spec: CorpusSpec, out_dir: Path, cache: Path) -> dict[str, Any]:
    rng = np.random.default_rng(plan.onset_seed)
    utts = [_load_utterance(u, cache, spec) for u in plan.utts]
    onsets, length = _place([len(u) for u in utts], spec, plan.overlap_target, rng)
    sources = np.zeros((len(utts), length), dtype=np.float32)
    for k, (u, o) in enumerate(zip(utts, onsets, strict=True)):
        seg = u[: max(0, length - o)]
        sources[k, o : o + len(seg)] = seg
        if spec.noise_floor_db is not None:
            floor = 10 ** ((SPEECH_LEVEL_DB + spec.noise_floor_db) / 20)
            sources[k] += floor * rng.standard_normal(length).astype(np.float32)
        sources[k] *= 10 ** (plan.gains_db[k] / 20)
    noise = None
    if plan.noise_snr_db is not None:
        loudest = max(audio.active_rms(s, spec.sample_rate) for s in sources)
        noise = (
            _make_noise(plan, length, spec, cache, rng) * loudest / 10 ** (plan.noise_snr_db / 20)
        )
    total = sources.sum(axis=0) + (noise if noise is not None else 0.0)
    peak = max(float(np.abs(total).max()), float(np.abs(sources).max()))
    if noise is not None:
        peak = max(peak, float(np.abs(noise).max()))
    scale = min(1.0, PEAK / peak) if peak > 0 else 1.0
    q_src = np.round(sources * scale * 32767).astype(np.int16)
    q_mix = q_src.astype(np.int32).sum(axis=0)
    q_noise = None
    if noise is not None:
        q_noise = np.round(noise * scale * 32767).astype(np.int16)
        q_mix += q_noise
    if np.abs(q_mix).max() > 32767:  # cannot happen with PEAK < 1; guards the exact-sum promise
        raise RuntimeError(f"{plan.id}: mixture overflows 16 bit")
    split_dir = out_dir / plan.split
    row: dict[str, Any] = {"id": plan.id, "mix_path": f"{plan.split}/mix/{plan.id}.wav"}
    sf.write(
        split_dir / "mix" / f"{plan.id}.wav", q_mix.astype(np.int16), spec.sample_rate, "PCM_16"
    )
    for k in range(len(utts)):
        rel = f"{plan.split}/s{k + 1}/{plan.id}.wav"
        sf.write(out_dir / rel, q_src[k], spec.sample_rate, "PCM_16")
        row[f"s{k + 1}_path"] = rel
    if q_noise is not None:
        row["noise_path"] = f"{plan.split}/noise/{plan.id}.wav"
        sf.write(out_dir / row["noise_path"], q_noise, spec.sample_rate, "PCM_16")
    row["length"] = length
    row["duration"] = round(length / spec.sample_rate, 4)
    row["overlap_ratio"] = round(audio.overlap_ratio(q_src.astype(np.float32), spec.sample_rate), 4)
    for k, utt in enumerate(plan.utts):
        row[f"speaker_{k + 1}"] = utt.speaker
        row[f"family_{k + 1}"] = utt.family
        row[f"gain_db_{k + 1}"] = plan.gains_db[k]
        row[f"onset_s_{k + 1}"] = round(onsets[k] / spec.sample_rate, 4)
    if plan.noise_snr_db is not None:
        row["noise_snr_db"] = plan.noise_snr_db
    row["scale_db"] = round(20 * math.log10(scale), 4)
    for k, utt in enumerate(plan.utts):
        row[f"utterance_{k + 1}"] = utt.key
        row[f"text_{k + 1}"] = utt.text
    return row


def _mix_chunk(args: tuple[list[MixPlan], CorpusSpec, str, str]) -> list[dict[str, Any]]:
    plans, spec, out_dir, cache = args
    return [_mix_one(p, spec, Path(out_dir), Path(cache)) for p in plans]


# ---------------------------------------------------------------------------------- driver


def _chunks(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def _read_meta(out_dir: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((out_dir / "corpus.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == CORPUS_FORMAT else None


def _progress(iterable: Iterable[Any], total: int, desc: str, enabled: bool) -> Iterable[Any]:
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="mix" if desc == "mixing" else "utt")


def generate_corpus(
    out_dir: Path, spec: CorpusSpec, progress: bool = True, workers: int | None = None
) -> dict[str, Any]:
    """Create (or reuse) the corpus described by ``spec`` in ``out_dir``; return a summary.

    A complete corpus with an equal spec and generator version (``out_dir/corpus.json``) is reused
    as is. Otherwise the split folders are rewritten; synthesized utterances are cached in
    ``out_dir/.utterance-cache`` and reused across re-runs and specs. ``workers`` defaults to the
    number of CPU cores.
    """
    out_dir = Path(out_dir)
    meta = _read_meta(out_dir)
    if (
        meta
        and meta.get("version") == CORPUS_VERSION
        and meta.get("complete")
        and meta.get("spec") == spec.to_json()
    ):
        summary = dict(meta["summary"])
        summary["reused"] = True
        return summary
    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    if meta is not None:  # ours, but incomplete or another spec: start the splits afresh
        for split in SPLITS:
            shutil.rmtree(out_dir / split, ignore_errors=True)
            (out_dir / f"{split}.csv").unlink(missing_ok=True)
    atomic_write_text(
        out_dir / "corpus.json",
        json.dumps({"format": CORPUS_FORMAT, "version": CORPUS_VERSION, "complete": False,
                    "spec": spec.to_json()}, indent=2),
    )  # fmt: skip
    cache = out_dir / CACHE_DIR
    cache.mkdir(exist_ok=True)

    speakers: dict[str, list[Speaker]] = {}
    plans: list[MixPlan] = []
    for split in SPLITS:
        speakers[split], split_plans = plan_split(spec, split)
        plans += split_plans
        if split_plans:
            names = ["mix", *[f"s{k + 1}" for k in range(spec.num_speakers)]]
            for name in [*names, *(["noise"] if spec.noise else [])]:
                (out_dir / split / name).mkdir(parents=True, exist_ok=True)
    unique: dict[str, UttPlan] = {}
    for p in plans:
        for u in [*p.utts, *p.babble]:
            unique.setdefault(u.key, u)
    todo = [u for u in unique.values() if not (cache / f"{u.key}.npy").exists()]

    n_workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
    synth.backend()  # fail early, in the main process, with the install hint
    backend_name = "espeak-ng library (espeakng-loader)"
    if isinstance(synth.backend(), synth._BinaryBackend):
        backend_name = "espeak-ng program"
    mix_chunk = max(1, min(16, len(plans) // (4 * n_workers) or 1))
    synth_jobs = [(c, str(cache)) for c in _chunks(todo, 8)]
    mix_jobs = [(c, spec, str(out_dir), str(cache)) for c in _chunks(plans, mix_chunk)]
    rows: list[dict[str, Any]] = []
    if n_workers == 1:
        for done in _progress(map(_synth_chunk, synth_jobs), len(synth_jobs), "speech", progress):
            del done
        for chunk_rows in _progress(map(_mix_chunk, mix_jobs), len(mix_jobs), "mixing", progress):
            rows += chunk_rows
    else:
        # fork where available: no `if __name__ == "__main__"` guard needed in callers' scripts,
        # and the workers inherit the initialised synthesizer (which has spoken nothing yet).
        # But a worker forks once per utterance, and forking a process that has torch mapped
        # costs ~3x more; a caller that imported torch gets lean spawned workers instead.
        lean = "fork" in mp.get_all_start_methods() and "torch" not in sys.modules
        method = "fork" if lean else "spawn"
        with mp.get_context(method).Pool(n_workers) as pool:
            it = pool.imap_unordered(_synth_chunk, synth_jobs)
            for done in _progress(it, len(synth_jobs), "speech", progress):
                del done
            it2 = pool.imap(_mix_chunk, mix_jobs)
            for chunk_rows in _progress(it2, len(mix_jobs), "mixing", progress):
                rows += chunk_rows

    split_summary: dict[str, Any] = {}
    for split in SPLITS:
        split_rows = [r for r in rows if r["id"].startswith(f"{split}-")]
        if split_rows:
            atomic_write_csv(out_dir / f"{split}.csv", split_rows)
        used = {r[f"speaker_{k + 1}"] for r in split_rows for k in range(spec.num_speakers)}
        split_summary[split] = {
            "mixtures": len(split_rows),
            "hours": round(sum(r["duration"] for r in split_rows) / 3600, 4),
            "speakers": len(used),
            "families": sorted({s.family for s in speakers[split] if s.id in used}),
            "mean_overlap_ratio": round(
                float(np.mean([r["overlap_ratio"] for r in split_rows])) if split_rows else 0.0, 4
            ),
            "manifest": f"{split}.csv" if split_rows else None,
        }
    atomic_write_csv(
        out_dir / "speakers.csv", [s.to_row() for split in SPLITS for s in speakers[split]]
    )
    seconds = time.perf_counter() - t0
    summary = {
        "out_dir": str(out_dir),
        "num_speakers": spec.num_speakers,
        "sample_rate": spec.sample_rate,
        "splits": split_summary,
        "utterances_synthesized": len(todo),
        "utterances_used": len(unique),
        "seconds": round(seconds, 2),
        "mixtures_per_second": round(len(plans) / seconds, 1) if seconds > 0 else 0.0,
        "workers": n_workers,
        "backend": backend_name,
        "reused": False,
    }
    atomic_write_text(
        out_dir / "corpus.json",
        json.dumps({"format": CORPUS_FORMAT, "version": CORPUS_VERSION, "complete": True,
                    "spec": spec.to_json(), "summary": summary}, indent=2),
    )  # fmt: skip
    return summary


# --------------------------------------------------------------------------------------- CLI
