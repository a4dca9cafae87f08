"""A small English grammar of common words, for the sentences the demo corpus speaks.

Why a grammar and not a dictionary dump: a first corpus built from random dictionary words sounded
like nothing anyone says (obscure words, no phrase structure, no pauses). Short clauses of everyday
words joined by commas and conjunctions give eSpeak natural intonation, and the pauses between
clauses and sentences (SSML ``<break>``) give the speech/silence rhythm of read speech.
"""

from __future__ import annotations

import numpy as np

_DET = ["the", "a", "my", "your", "our", "this", "that", "his", "her", "one"]
_ADJ = [
    "old", "new", "small", "big", "red", "blue", "green", "little", "good", "long", "warm",
    "cold", "quiet", "happy", "busy", "early", "late", "nice", "dark", "bright", "young",
    "short", "heavy", "clean", "empty", "full", "open", "strong", "simple", "real",
]  # fmt: skip
_NOUN = [
    "dog", "cat", "house", "car", "book", "door", "road", "city", "table", "water", "friend",
    "child", "teacher", "doctor", "garden", "window", "letter", "train", "river", "market",
    "school", "office", "kitchen", "morning", "evening", "paper", "phone", "picture", "story",
    "family", "student", "street", "bridge", "hotel", "bank", "park", "shop", "plan", "song",
    "game", "party", "meeting", "report", "bottle", "chair", "bus", "ticket", "money", "coffee",
    "dinner", "lunch", "box", "bag", "farm", "boat", "field", "hill", "town", "village",
]  # fmt: skip
_NAME = [
    "Anna", "Peter", "Maria", "John", "Lucy", "David", "Sarah", "Tom", "Emma", "James",
    "Laura", "Mark", "Kate", "Paul", "Helen", "Sam", "Alice", "Robert", "Nina", "Daniel",
]  # fmt: skip
_VERB_PAST = [
    "found", "saw", "took", "left", "bought", "sold", "opened", "closed", "painted", "cleaned",
    "moved", "carried", "watched", "visited", "called", "followed", "fixed", "needed", "liked",
    "brought", "made", "wanted", "checked", "showed", "kept", "lost", "sent", "read", "used",
]  # fmt: skip
_VERB_BASE = [
    "find", "see", "take", "leave", "buy", "sell", "open", "close", "paint", "clean", "move",
    "carry", "watch", "visit", "call", "follow", "fix", "bring", "make", "check", "show",
    "keep", "send", "read", "use", "meet", "help", "finish", "start", "try",
]  # fmt: skip
_VERB_INTR = [
    "arrived", "waited", "stayed", "laughed", "walked", "worked", "slept", "smiled", "talked",
    "played", "returned", "stopped", "started", "listened", "agreed", "left", "came back",
]  # fmt: skip
_PREP = ["in", "near", "behind", "under", "at", "by", "beside", "across", "from", "into"]
_TIME = [
    "today", "yesterday", "tomorrow", "this morning", "last night", "on Monday", "on Friday",
    "after lunch", "before dinner", "every day", "next week", "at noon", "in the evening",
    "two days ago", "last summer", "right now", "later", "soon",
]  # fmt: skip
_CONJ = ["and", "but", "so", "because", "then", "while", "and then", "although"]
_OPENER = [
    "well", "of course", "I think", "you know", "by the way", "actually", "oh", "okay",
    "in fact", "to be honest", "I guess", "sometimes",
]  # fmt: skip
_NUM = ["two", "three", "four", "five", "six", "seven", "ten", "twelve", "twenty", "a few"]


def _pick(rng: np.random.Generator, words: list[str]) -> str:
    return words[int(rng.integers(len(words)))]


def _noun_phrase(rng: np.random.Generator) -> str:
    r = rng.random()
    if r < 0.15:
        return _pick(rng, _NAME)
    if r < 0.25:
        return f"{_pick(rng, _NUM)} {_pick(rng, _NOUN)}s"
    det = _pick(rng, _DET)
    if rng.random() < 0.45:
        return f"{det} {_pick(rng, _ADJ)} {_pick(rng, _NOUN)}"
    return f"{det} {_pick(rng, _NOUN)}"


def _subject(rng: np.random.Generator) -> str:
    if rng.random() < 0.35:
        return _pick(rng, ["I", "we", "they", "she", "he", "you"])
    return _noun_phrase(rng)


def clause(rng: np.random.Generator) -> str:
    """One clause of 3–9 words (statement, with optional place and time)."""
    kind = rng.random()
    if kind < 0.45:
        words = f"{_subject(rng)} {_pick(rng, _VERB_PAST)} {_noun_phrase(rng)}"
    elif kind < 0.7:
        words = f"{_subject(rng)} {_pick(rng, _VERB_INTR)}"
    elif kind < 0.85:
        modal = _pick(rng, ["will", "can", "should", "must", "might", "want to", "need to"])
        words = f"{_subject(rng)} {modal} {_pick(rng, _VERB_BASE)} {_noun_phrase(rng)}"
    else:
        words = f"{_noun_phrase(rng)} was {_pick(rng, _ADJ)}"
    if rng.random() < 0.35:
        words += f" {_pick(rng, _PREP)} {_noun_phrase(rng)}"
    if rng.random() < 0.3:
        words += f" {_pick(rng, _TIME)}"
    return words


def question(rng: np.random.Generator) -> str:
    aux = _pick(rng, ["can you", "did you", "will they", "should we", "do you want to"])
    text = f"{aux} {_pick(rng, _VERB_BASE)} {_noun_phrase(rng)}"
    if rng.random() < 0.4:
        text += f" {_pick(rng, _TIME)}"
    return text


def sentence(rng: np.random.Generator, max_words: int) -> list[str]:
    """A sentence as a list of clauses (to be joined with pauses); ends with '.' or '?'."""
    if rng.random() < 0.15:
        q = question(rng)
        return [q[0].upper() + q[1:] + "?"]
    parts: list[str] = []
    if rng.random() < 0.2:
        parts.append(_pick(rng, _OPENER) + ",")
    parts.append(clause(rng))
    n_words = sum(len(p.split()) for p in parts)
    while n_words < max_words and rng.random() < 0.55:
        nxt = f"{_pick(rng, _CONJ)} {clause(rng)}"
        parts[-1] += ","
        parts.append(nxt)
        n_words += len(nxt.split())
    parts[0] = parts[0][0].upper() + parts[0][1:]
    parts[-1] += "."
    return parts


def utterance_ssml(
    rng: np.random.Generator,
    n_words: int,
    clause_pause_ms: tuple[int, int] = (150, 600),
    sentence_pause_ms: tuple[int, int] = (400, 1200),
    hesitation_prob: float = 0.2,
) -> tuple[str, str]:
    """About ``n_words`` words of speech as (plain text, SSML with random pauses).

    Pauses are drawn per boundary so that two utterances of the same text still differ in rhythm.
    """
    plain: list[str] = []
    pieces: list[str] = []
    total = 0
    while total < n_words:
        parts = sentence(rng, max(3, n_words - total))
        for i, part in enumerate(parts):
            plain.append(part)
            words = part.split()
            if len(words) >= 4 and rng.random() < hesitation_prob:
                # A short hesitation inside the clause, as readers take a breath mid-phrase.
                cut = int(rng.integers(2, len(words) - 1))
                pause = f'<break time="{int(rng.integers(80, 300))}ms"/>'
                pieces.append(" ".join([*words[:cut], pause, *words[cut:]]))
            else:
                pieces.append(part)
            total += len(part.split())
            if i < len(parts) - 1:
                lo, hi = clause_pause_ms
                pieces.append(f'<break time="{int(rng.integers(lo, hi + 1))}ms"/>')
        if total < n_words:
            lo, hi = sentence_pause_ms
            pieces.append(f'<break time="{int(rng.integers(lo, hi + 1))}ms"/>')
    return " ".join(plain), "<speak>" + " ".join(pieces) + "</speak>"
