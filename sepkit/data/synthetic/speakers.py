"""Synthetic speakers for the demo corpus, grouped into voice-variant *families*.

eSpeak NG's variants (``voices/!v``) are timbre presets; several are near-copies of each other
(``iven`` … ``iven4``, ``klatt`` … ``klatt5``, ``Michael``/``Mario``). A first corpus split speakers
at random and every test speaker shared a variant with training, so "unseen speakers" were not
unseen. Here families are assigned whole to one split, so test voices are genuinely new timbres.

A *speaker* is one variant with one English accent, a base pitch, pitch range and speaking rate.
Variants whose output is not reproducible from run to run (those using eSpeak's breath noise) and
robotic or novelty presets are left out.

Families are split within strata of gender and *synthesiser* (eSpeak's default formant synthesiser
or its Klatt one, which sounds markedly different). Real corpora hold unseen speakers in the test
set, not an unseen kind of voice: a first split sent both Klatt families to test, so most test
mixtures held a voice unlike anything in training (they scored ~1.2 dB lower, docs/demo.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

#: family -> (gender, variants). Near-duplicate variants share a family.
FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "m1": ("m", ("m1",)),
    "m2": ("m", ("m2",)),
    "m3": ("m", ("m3",)),
    "m4": ("m", ("m4",)),
    "m5": ("m", ("m5",)),
    "m6": ("m", ("m6",)),
    "m7": ("m", ("m7", "m8", "Nguyen")),
    "iven": ("m", ("iven", "iven2", "iven3", "iven4")),
    "klatt": ("m", ("klatt", "klatt2", "klatt3", "klatt4", "klatt5")),
    "klatt6": ("m", ("klatt6", "adam", "benjamin", "david", "edward", "edward2", "mike2", "Reed")),
    "gene": ("m", ("Gene", "Gene2")),
    "michael": ("m", ("Michael", "Mario", "gustave", "marcelo")),
    "iberian": ("m", ("Diogo", "Henrique", "Hugo", "michel", "miguel")),
    "robert": ("m", ("rob", "robert", "quincy")),
    "andy": ("m", ("Andy", "AnxiousAndy", "Lee")),
    "paul": ("m", ("paul",)),
    "ed": ("m", ("ed",)),
    "jacky": ("m", ("Jacky",)),
    "travis": ("m", ("travis",)),
    "antonio": ("m", ("antonio",)),
    "pedro": ("m", ("pedro",)),
    "alex": ("m", ("Alex",)),
    "denis": ("m", ("Denis",)),
    "storm": ("m", ("Storm",)),
    "grandpa": ("m", ("grandpa",)),
    "kaukovalta": ("m", ("kaukovalta",)),
    "mike": ("m", ("Mike",)),
    "f1": ("f", ("f1",)),
    "f4": ("f", ("f4", "aunty")),
    "linda": ("f", ("linda", "belinda")),
    "steph": ("f", ("steph", "steph2", "steph3")),
    "annie": ("f", ("Annie",)),
    "andrea": ("f", ("Andrea",)),
    "anika": ("f", ("anika",)),
    "shelby": ("f", ("shelby",)),
    "grandma": ("f", ("grandma",)),
}

#: Families whose variants use eSpeak's Klatt synthesiser (``klatt N`` in the variant file).
KLATT_FAMILIES = frozenset({"klatt", "klatt6"})

ACCENTS: tuple[str, ...] = (
    "en-us",
    "en",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-us-nyc",
    "en-029",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
)

SPLITS = ("train", "valid", "test")
#: eSpeak's formants 0..8 (a variant file line is ``formant N freq% height% width%``).
_N_FORMANTS = 9
#: Female formant frequencies are ~17 % above male ones (shorter vocal tract); eSpeak's female
#: variants run 105-135 % of the default against 95-100 % for male ones.
_GENDER_FORMANT_RATIO = 1.17
#: Base pitch ranges (Hz) for cross-gender speakers: lowest (from, to) and span above it (from,
#: to), spanning what eSpeak's published variants of each gender use (f1 140-200, Linda 200-247,
#: Anika 200-300; male1 75-109, male3 80-122).
_PITCH_HZ = {"f": (130, 210, 40, 110), "m": (70, 110, 25, 50)}
#: Share of each gender's families per split; test and valid get at least one of each gender.
_SPLIT_SHARE = {"valid": 0.17, "test": 0.2}
#: Fixed, so the family split is the same for every seed: "test voices" mean the same thing
#: across corpora and a model trained on one corpus can be tested on another's test split.
_FAMILY_SPLIT_SEED = 20240601


@dataclass(frozen=True)
class Speaker:
    id: str
    split: str
    family: str
    gender: str
    variant: str
    accent: str
    pitch: int
    pitch_range: int
    rate: int
    #: First-order pre-emphasis of this speaker's "microphone" (0 = none): brightens the top octave,
    #: which eSpeak renders with little energy compared with recorded speech.
    emphasis: float
    #: Multiplies the variant's formant frequencies (1.0 = as published); training speakers only.
    formant_scale: float = 1.0
    #: Per-formant frequency and height multipliers, and a base pitch range (Hz) replacing the
    #: variant's: training speakers only, see ``make_speakers`` (empty/None = as published).
    formant_factors: tuple[float, ...] = ()
    height_factors: tuple[float, ...] = ()
    pitch_hz: tuple[int, int] | None = None

    def to_row(self) -> dict[str, object]:
        return asdict(self)


def _log_uniform(rng: np.random.Generator, bound: float, count: int) -> tuple[float, ...]:
    return tuple(round(math.exp(float(x)), 3) for x in rng.uniform(-bound, bound, size=count))


def synthesiser(family: str) -> str:
    """``"klatt"`` or ``"formant"``: which of eSpeak's synthesisers renders the family."""
    return "klatt" if family in KLATT_FAMILIES else "formant"


def family_splits() -> dict[str, str]:
    """family -> split, disjoint, stratified by gender and synthesiser.

    Every stratum keeps at least one family in training; test, then validation, take their share
    of what is left, at least one family each where the stratum can spare it.
    """
    rng = np.random.default_rng(_FAMILY_SPLIT_SEED)
    out: dict[str, str] = {}
    strata = sorted({(g, synthesiser(f)) for f, (g, _) in FAMILIES.items()})
    for gender, synth in strata:
        fams = sorted(
            f for f, (g, _) in FAMILIES.items() if g == gender and synthesiser(f) == synth
        )
        order = [fams[i] for i in rng.permutation(len(fams))]
        spare = len(fams) - 1
        n_test = min(spare, max(1, round(_SPLIT_SHARE["test"] * len(fams))))
        n_valid = min(spare - n_test, max(1, round(_SPLIT_SHARE["valid"] * len(fams))))
        for i, fam in enumerate(order):
            out[fam] = "test" if i < n_test else "valid" if i < n_test + n_valid else "train"
    return out


def make_speakers(
    split: str,
    seed: int,
    per_variant: int = 2,
    accents: tuple[str, ...] = ACCENTS,
    formant_shift: float = 0.0,
    timbre_jitter: float = 0.0,
    cross_gender: float = 0.0,
) -> list[Speaker]:
    """The speakers of one split: ``per_variant`` accent/pitch/rate combinations per variant.

    eSpeak has a few dozen timbres; a model that hears only those learns them rather than voices
    in general, and unseen test voices suffered for it. So *training* speakers can be new timbres
    made from the variants (valid and test speakers stay the published variants):

    - ``formant_shift`` > 0: its own vocal-tract length, the variant's formants scaled by a factor
      drawn log-uniformly in [1/(1+shift), 1+shift];
    - ``timbre_jitter`` > 0: each formant's frequency moved by its own factor in
      [1/(1+jitter), 1+jitter] and its height by one in twice that (log-uniform);
    - ``cross_gender``: this share of speakers is rendered as the other gender, formants moved
      by the typical female/male ratio (x1.17 or /1.17) and the base pitch range replaced by one
      typical of that gender, which is then the speaker's gender. Only 5 female families are in
      training, against 17 male ones; this makes female voices from male variants too.

    A derived speaker keeps its variant's family: it never meets that family in a mixture.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    assignment = family_splits()
    rng = np.random.default_rng([seed, 7, SPLITS.index(split)])
    # Timbre edits draw from their own stream: switching them on leaves every speaker's accent,
    # pitch and rate (and the speakers of earlier corpora) as they were.
    edit_rng = np.random.default_rng([seed, 8, SPLITS.index(split)])
    speakers: list[Speaker] = []
    for family in sorted(FAMILIES):
        if assignment[family] != split:
            continue
        gender, variants = FAMILIES[family]
        for variant in variants:
            picks = rng.choice(len(accents), size=min(per_variant, len(accents)), replace=False)
            for k, a in enumerate(picks):
                pitch = int(rng.integers(32, 69))
                pitch_range = int(rng.integers(30, 75))
                rate = int(rng.integers(145, 186))
                emphasis = round(float(rng.uniform(0.0, 0.7)), 3)
                scale = 1.0
                if split == "train" and formant_shift > 0:
                    bound = math.log1p(formant_shift)
                    scale = round(math.exp(float(rng.uniform(-bound, bound))), 3)
                as_gender = gender
                factors: tuple[float, ...] = ()
                heights: tuple[float, ...] = ()
                pitch_hz: tuple[int, int] | None = None
                if split == "train" and timbre_jitter > 0:
                    bound = math.log1p(timbre_jitter)
                    factors = _log_uniform(edit_rng, bound, _N_FORMANTS)
                    heights = _log_uniform(edit_rng, 2 * bound, _N_FORMANTS)
                if split == "train" and cross_gender > 0 and edit_rng.random() < cross_gender:
                    as_gender = "f" if gender == "m" else "m"
                    scale = round(
                        scale * (_GENDER_FORMANT_RATIO ** (1 if as_gender == "f" else -1)), 3
                    )
                    low_lo, low_hi, span_lo, span_hi = _PITCH_HZ[as_gender]
                    low = int(edit_rng.integers(low_lo, low_hi + 1))
                    pitch_hz = (low, low + int(edit_rng.integers(span_lo, span_hi + 1)))
                speakers.append(
                    Speaker(
                        id=f"{variant}-{accents[int(a)]}-{k}".lower(),
                        split=split,
                        family=family,
                        gender=as_gender,
                        variant=variant,
                        accent=accents[int(a)],
                        pitch=pitch,
                        pitch_range=pitch_range,
                        rate=rate,
                        emphasis=emphasis,
                        formant_scale=scale,
                        formant_factors=factors,
                        height_factors=heights,
                        pitch_hz=pitch_hz,
                    )
                )
    return speakers
