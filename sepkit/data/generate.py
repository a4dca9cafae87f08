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

import argparse
import ctypes
import hashlib
import json
import math
import multiprocessing as mp
import os
import shutil
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soundfile as sf

from sepkit.data import audio, synth
from sepkit.data.speakers import ACCENTS, SPLITS, Speaker, make_speakers
from sepkit.data.text import utterance_ssml
from sepkit.utils.io import atomic_write_csv, atomic_write_text

CORPUS_FORMAT = "sepkit-espeak-corpus"
#: 2: family split stratified by synthesiser (speakers.family_splits); 3: a mixture's speakers come
#: from different families (``draw_distinct_voices``).
CORPUS_VERSION = 3
CACHE_DIR = ".utterance-cache"
#: Active speech level each utterance is normalised to before gains (dB re full scale).
SPEECH_LEVEL_DB = -25.0
PEAK = 0.9


@dataclass(frozen=True)
class CorpusSpec:
    """Everything that determines the corpus; two equal specs give byte-identical files."""

    num_speakers: int = 2
    n_train: int = 2000
    n_valid: int = 300
    n_test: int = 300
    sample_rate: int = 8000
    seed: int = 0
    #: "min": truncate to the shortest utterance (wsj0-2mix training); "max": pad to the longest.
    mode: Literal["min", "max"] = "min"
    #: Add a WHAM!-like noise track (``noise/``) to every mixture.
    noise: bool = False
    #: Range of utterance durations in seconds (text length is chosen to match; long ones are cut
    #: in a pause).
    utterance_seconds: tuple[float, float] = (2.0, 6.0)
    #: "max" mode: target overlap between each new source and the ones placed so far, as a fraction
    #: of the shorter one, drawn uniformly in this range (1.0 = fully overlapped).
    overlap: tuple[float, float] = (0.5, 1.0)
    #: "min" mode: each source but one starts after a random delay up to this many seconds.
    max_onset_s: float = 0.5
    #: Gains relative to the first source, uniform in [-gain_db, gain_db] (wsj0-2mix: 5 dB).
    gain_db: float = 5.0
    #: Level of the loudest source relative to the noise (WHAM!: -6 to +3 dB).
    noise_snr_db: tuple[float, float] = (-6.0, 3.0)
    #: Low-level recording noise under each source, relative to its speech level (None = off),
    #: so pauses are not digital silence, which no real recording has.
    noise_floor_db: float | None = -65.0
    #: Speakers (accent/pitch/rate combinations) made from each voice variant.
    speakers_per_variant: int = 2
    #: The same for the training split only (None = ``speakers_per_variant``): more training
    #: voices without changing the validation and test splits.
    train_speakers_per_variant: int | None = None
    #: Training speakers' formants are scaled by a factor within [1/(1+x), 1+x] each (0 = off):
    #: new timbres from eSpeak's few dozen (``speakers.make_speakers``).
    formant_shift: float = 0.0
    #: Training speakers' formants also move one by one, frequency by a factor within
    #: [1/(1+x), 1+x] and height within twice that (0 = off): timbres no published variant has.
    timbre_jitter: float = 0.0
    #: Share of training speakers rendered as the other gender (formants and base pitch moved
    #: across): female voices from male variants and the reverse (0 = off).
    cross_gender: float = 0.0
    #: Average number of mixtures each synthesized utterance appears in (wsj0-2mix reuses too).
    utterance_reuse: float = 2.0
    #: Per-utterance jitter of the speaker's rate (fraction) and pitch (eSpeak 0–100 units).
    rate_jitter: float = 0.06
    pitch_jitter: int = 4
    accents: tuple[str, ...] = ACCENTS

    def __post_init__(self) -> None:
        problems = []
        if not 2 <= self.num_speakers <= 6:
            problems.append(f"num_speakers={self.num_speakers}: must be between 2 and 6")
        if min(self.n_train, self.n_valid, self.n_test) < 0:
            problems.append("n_train/n_valid/n_test must be >= 0")
        if self.sample_rate not in (8000, 16000):
            problems.append(f"sample_rate={self.sample_rate}: must be 8000 or 16000")
        if self.mode not in ("min", "max"):
            problems.append(f"mode={self.mode!r}: must be 'min' or 'max'")
        lo, hi = self.utterance_seconds
        if not 0.5 <= lo <= hi:
            problems.append("utterance_seconds: need 0.5 <= low <= high")
        if not 0.0 <= self.overlap[0] <= self.overlap[1] <= 1.0:
            problems.append("overlap: need 0 <= low <= high <= 1")
        if self.gain_db < 0 or self.utterance_reuse < 1.0 or self.speakers_per_variant < 1:
            problems.append("gain_db >= 0, utterance_reuse >= 1, speakers_per_variant >= 1")
        if self.train_speakers_per_variant is not None and self.train_speakers_per_variant < 1:
            problems.append("train_speakers_per_variant must be >= 1")
        if not 0.0 <= self.formant_shift <= 0.5:
            problems.append(f"formant_shift={self.formant_shift}: must be between 0 and 0.5")
        if not 0.0 <= self.timbre_jitter <= 0.3:
            problems.append(f"timbre_jitter={self.timbre_jitter}: must be between 0 and 0.3")
        if not 0.0 <= self.cross_gender <= 1.0:
            problems.append(f"cross_gender={self.cross_gender}: must be between 0 and 1")
        if problems:
            raise ValueError("CorpusSpec: " + "; ".join(problems))

    def counts(self) -> dict[str, int]:
        return {"train": self.n_train, "valid": self.n_valid, "test": self.n_test}

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))


@dataclass(frozen=True)
class UttPlan:
    """One utterance to synthesize; ``key`` names its cache file."""

    key: str
    speaker: str
    family: str
    text: str
    ssml: str
    voice: synth.Voice
    emphasis: float


@dataclass
class MixPlan:
    split: str
    id: str
    utts: list[UttPlan]
    gains_db: list[float]
    overlap_target: float
    onset_seed: int
    noise_snr_db: float | None = None
    babble: list[UttPlan] = field(default_factory=list)


# ----------------------------------------------------------------------------------- planning


def _utt_key(ssml: str, voice: synth.Voice) -> str:
    """Names the cached utterance and seeds Klatt voices' noise (``_srand``), so it must not
    change for a voice that sounds the same: an unshifted voice keeps its corpus-v2 key."""
    v = voice
    desc = (
        f"Voice(language={v.language!r}, variant={v.variant!r}, rate={v.rate}, pitch={v.pitch}, "
        f"pitch_range={v.pitch_range}{f', {v.edits}' if v.shifted else ''})"
    )
    return hashlib.sha1(f"{synth.NATIVE_RATE}|{desc}|{ssml}".encode()).hexdigest()[:20]


def gender_balanced_weights(speakers: list[Speaker]) -> np.ndarray:
    """Probability of drawing each speaker into a mixture: each gender gets an equal share.

    eSpeak has about four male variants for each female one; drawing speakers uniformly gave 64 %
    male-male test mixtures. The corpora sepkit imitates are balanced (WSJ0's and LibriSpeech's
    speaker sets are about half female), so mixtures draw genders, not variants, evenly.
    """
    genders = [s.gender for s in speakers]
    share = {g: 1.0 / (len(set(genders)) * genders.count(g)) for g in set(genders)}
    return np.array([share[g] for g in genders])


def draw_distinct_voices(
    rng: np.random.Generator, speakers: list[Speaker], weights: np.ndarray, count: int
) -> list[int]:
    """Indices of ``count`` speakers for one mixture, no two of them from the same family.

    A family groups eSpeak variants that are near-copies of one timbre (``speakers.FAMILIES``), and
    the speakers made from one variant differ only in accent, base pitch and rate: two of them in a
    mixture are one voice mixed with itself, which no wsj0-2mix or LibriMix mixture is (those always
    hold two different people). Corpus version 2 drew speakers regardless of family and 35 of its
    200 test mixtures were such pairs, scoring ~2 dB against 5.3 dB for the rest (docs/demo.md).
    Each speaker is drawn with its ``weights`` among the families not yet in the mixture.
    """
    families = [s.family for s in speakers]
    if len(set(families)) < count:
        raise ValueError(
            f"{len(set(families))} voice families in the split, too few for {count} speakers per "
            "mixture from different families"
        )
    p = np.asarray(weights, dtype=np.float64).copy()
    chosen: list[int] = []
    for _ in range(count):
        pick = int(rng.choice(len(speakers), p=p / p.sum()))
        chosen.append(pick)
        p[[i for i, fam in enumerate(families) if fam == families[pick]]] = 0.0
    return chosen


def _pick(rng: np.random.Generator, pool: list[UttPlan]) -> UttPlan:
    return pool[int(rng.integers(len(pool)))]


def _plan_split(spec: CorpusSpec, split: str) -> tuple[list[Speaker], list[MixPlan]]:
    n_mix = spec.counts()[split]
    per_variant = spec.speakers_per_variant
    if split == "train" and spec.train_speakers_per_variant is not None:
        per_variant = spec.train_speakers_per_variant
    speakers = make_speakers(
        split,
        spec.seed,
        per_variant,
        spec.accents,
        spec.formant_shift,
        spec.timbre_jitter,
        spec.cross_gender,
    )
    if n_mix == 0:
        return speakers, []
    if len(speakers) < spec.num_speakers + (3 if spec.noise else 0):
        raise ValueError(
            f"split {split!r} has {len(speakers)} speakers, too few for {spec.num_speakers} per "
            "mixture; raise speakers_per_variant"
        )
    rng = np.random.default_rng([spec.seed, 11, SPLITS.index(split)])
    n_utts = math.ceil(n_mix * spec.num_speakers / spec.utterance_reuse)
    weights = gender_balanced_weights(speakers)
    lo_s, hi_s = spec.utterance_seconds
    pools: dict[str, list[UttPlan]] = {}
    for spk, weight in zip(speakers, weights, strict=True):
        pool = []
        for _ in range(max(1, math.ceil(n_utts * weight))):
            rate = round(spk.rate * (1.0 + float(rng.uniform(-spec.rate_jitter, spec.rate_jitter))))
            pitch = int(
                np.clip(spk.pitch + rng.integers(-spec.pitch_jitter, spec.pitch_jitter + 1), 0, 100)
            )
            voice = synth.Voice(
                spk.accent,
                spk.variant,
                rate,
                pitch,
                spk.pitch_range,
                spk.formant_scale,
                spk.formant_factors,
                spk.height_factors,
                spk.pitch_hz,
            )
            # Words for the target duration at this rate; ~65 % of the time is speech.
            seconds = rng.uniform(lo_s, hi_s)
            n_words = max(3, round(float(seconds) * rate / 60.0 * 0.65))
            text, ssml = utterance_ssml(rng, n_words)
            pool.append(
                UttPlan(_utt_key(ssml, voice), spk.id, spk.family, text, ssml, voice, spk.emphasis)
            )
        pools[spk.id] = pool
    spk_ids = [s.id for s in speakers]
    plans = []
    for i in range(n_mix):
        chosen = draw_distinct_voices(rng, speakers, weights, spec.num_speakers)
        utts = [_pick(rng, pools[spk_ids[c]]) for c in chosen]
        rel = [0.0] + [float(rng.uniform(-spec.gain_db, spec.gain_db)) for _ in utts[1:]]
        mean = sum(rel) / len(rel)
        plan = MixPlan(
            split=split,
            id=f"{split}-{i:06d}",
            utts=utts,
            gains_db=[round(g - mean, 4) for g in rel],
            overlap_target=float(rng.uniform(*spec.overlap)),
            onset_seed=int(rng.integers(2**31)),
        )
        if spec.noise:
            plan.noise_snr_db = round(float(rng.uniform(*spec.noise_snr_db)), 4)
            others = [j for j in range(len(spk_ids)) if j not in set(chosen)]
            babblers = rng.choice(others, size=3, replace=False)
            plan.babble = [_pick(rng, pools[spk_ids[b]]) for b in babblers]
        plans.append(plan)
    return speakers, plans


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
        speakers[split], split_plans = _plan_split(spec, split)
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


def add_prepare_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``sepkit prepare-demo`` (the CLI only wires these)."""
    d = CorpusSpec()
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--num-speakers", type=int, default=d.num_speakers, help="sources per mix")
    parser.add_argument("--n-train", type=int, default=d.n_train)
    parser.add_argument("--n-valid", type=int, default=d.n_valid)
    parser.add_argument("--n-test", type=int, default=d.n_test)
    parser.add_argument("--sample-rate", type=int, default=d.sample_rate, choices=(8000, 16000))
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--mode", choices=("min", "max"), default=d.mode)
    parser.add_argument("--noise", action="store_true", help="add a WHAM!-like noise track")
    parser.add_argument(
        "--overlap",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=d.overlap,
        help="'max' mode: range of target overlap between sources (fraction)",
    )
    parser.add_argument(
        "--formant-shift",
        type=float,
        default=d.formant_shift,
        help="scale each training speaker's formants by a factor within [1/(1+X), 1+X] "
        "(new timbres; valid/test voices unchanged; 0 = off)",
    )
    parser.add_argument(
        "--timbre-jitter",
        type=float,
        default=d.timbre_jitter,
        help="also move each training speaker's formants one by one: frequency within "
        "[1/(1+X), 1+X], height within twice that (0 = off)",
    )
    parser.add_argument(
        "--cross-gender",
        type=float,
        default=d.cross_gender,
        help="share of training speakers rendered as the other gender (0 = off)",
    )
    parser.add_argument(
        "--train-speakers-per-variant",
        type=int,
        default=d.train_speakers_per_variant,
        help="training speakers made from each eSpeak voice variant (default: as valid/test)",
    )
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run_prepare_demo(args: argparse.Namespace) -> int:
    """Build the spec from parsed arguments, generate, print a summary; return an exit code."""
    try:
        spec = CorpusSpec(
            num_speakers=args.num_speakers,
            n_train=args.n_train,
            n_valid=args.n_valid,
            n_test=args.n_test,
            sample_rate=args.sample_rate,
            seed=args.seed,
            mode=args.mode,
            noise=args.noise,
            overlap=tuple(args.overlap),
            formant_shift=args.formant_shift,
            timbre_jitter=args.timbre_jitter,
            cross_gender=args.cross_gender,
            train_speakers_per_variant=args.train_speakers_per_variant,
        )
    except ValueError as err:
        print(f"prepare-demo: {err}", file=sys.stderr)
        return 2
    try:
        summary = generate_corpus(
            args.out, spec, progress=not args.no_progress, workers=args.workers
        )
    except synth.SynthError as err:
        print(f"prepare-demo: {err}", file=sys.stderr)
        return 1
    if summary.get("reused"):
        print(f"corpus in {args.out} is complete and matches the request; reusing it")
    for split, s in summary["splits"].items():
        print(
            f"{split:5s}: {s['mixtures']} mixtures, {s['hours']:.2f} h, {s['speakers']} speakers, "
            f"mean overlap {s['mean_overlap_ratio']:.2f}"
        )
    if not summary.get("reused"):
        print(f"{summary['mixtures_per_second']} mixtures/s with {summary['workers']} workers")
    return 0
