"""Which utterances and mixtures each split of the synthetic corpus gets, from its spec and seed
(the plan is computed first and whole, so a corpus is a pure function of its spec)."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from sepkit.data.synthetic import synth
from sepkit.data.synthetic.speakers import ACCENTS, SPLITS, Speaker, make_speakers
from sepkit.data.synthetic.text import utterance_ssml


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


def plan_split(spec: CorpusSpec, split: str) -> tuple[list[Speaker], list[MixPlan]]:
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
