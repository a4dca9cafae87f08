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

    def to_row(self) -> dict[str, object]:
        return asdict(self)


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
) -> list[Speaker]:
    """The speakers of one split: ``per_variant`` accent/pitch/rate combinations per variant.

    With ``formant_shift`` > 0 each *training* speaker also gets its own vocal-tract length: the
    variant's formants scaled by a factor drawn log-uniformly in [1/(1+shift), 1+shift]. eSpeak has
    a few dozen timbres; a model that hears only those learns them rather than voices in general,
    and unseen test voices suffered for it. Valid and test speakers stay the published variants.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    assignment = family_splits()
    rng = np.random.default_rng([seed, 7, SPLITS.index(split)])
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
                speakers.append(
                    Speaker(
                        id=f"{variant}-{accents[int(a)]}-{k}".lower(),
                        split=split,
                        family=family,
                        gender=gender,
                        variant=variant,
                        accent=accents[int(a)],
                        pitch=pitch,
                        pitch_range=pitch_range,
                        rate=rate,
                        emphasis=emphasis,
                        formant_scale=scale,
                    )
                )
    return speakers
