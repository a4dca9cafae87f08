"""Start-up validation of every file of a split: all problems at once, before any training.

A bad file found in the middle of epoch 3 costs hours; found at start-up it costs seconds. Each file
is opened once: the header (``soundfile.info``: rate, channels, frames) and, in the same pass, the
samples (NaN/inf, all zeros). The per-file facts are cached by (size, mtime) in a JSON file, so a
resume or a second run on a 20 000-file corpus re-reads only files that changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from sepkit.data.corpus import Record
from sepkit.data.errors import Problem
from sepkit.utils.io import atomic_write_text

CACHE_VERSION = 1
_FLOAT_SUBTYPES = {"FLOAT", "DOUBLE", "VORBIS", "OPUS", "MPEG_LAYER_III"}


@dataclass(frozen=True)
class FileFacts:
    """What validation needs to know about one file (cached)."""

    rate: int = 0
    channels: int = 0
    frames: int = 0
    nonfinite: bool = False
    silent: bool = False
    error: str = ""  # "missing file" / "unreadable: ..." when the file cannot be used at all


def inspect_file(path: Path) -> FileFacts:
    """Header and sample checks of one file in a single open."""
    try:
        with sf.SoundFile(str(path)) as f:
            rate, channels, frames, subtype = f.samplerate, f.channels, f.frames, f.subtype
            if subtype in _FLOAT_SUBTYPES:
                data = f.read(dtype="float32")
                nonfinite = not bool(np.isfinite(data).all())
                silent = not nonfinite and not bool(np.any(data))
            else:  # integer PCM cannot hold NaN; int16 read is cheaper than float
                data = f.read(
                    dtype="int16" if subtype in ("PCM_16", "PCM_U8", "PCM_S8") else "int32"
                )
                nonfinite, silent = False, not bool(np.any(data))
    except FileNotFoundError:
        return FileFacts(error="missing file")
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        if not path.exists():
            return FileFacts(error="missing file")
        return FileFacts(error=f"unreadable: {err}")
    return FileFacts(rate, channels, frames, nonfinite, silent)


class FactsCache:
    """``{path: [size, mtime_ns, facts...]}`` in one JSON file; stale entries are re-read."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, list] = {}
        self.dirty = False
        if path is not None:
            try:
                data = json.loads(path.read_text())
                if data.get("version") == CACHE_VERSION:
                    self.entries = data["files"]
            except (OSError, ValueError, KeyError, AttributeError):
                self.entries = {}

    def get(self, path: Path, stat: os.stat_result) -> FileFacts | None:
        e = self.entries.get(str(path))
        if e is None or e[0] != stat.st_size or e[1] != stat.st_mtime_ns:
            return None
        return FileFacts(*e[2:])

    def put(self, path: Path, stat: os.stat_result, facts: FileFacts) -> None:
        self.entries[str(path)] = [
            stat.st_size,
            stat.st_mtime_ns,
            facts.rate,
            facts.channels,
            facts.frames,
            facts.nonfinite,
            facts.silent,
            facts.error,
        ]
        self.dirty = True

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        try:
            text = json.dumps({"version": CACHE_VERSION, "files": self.entries})
            atomic_write_text(self.path, text)
        except OSError:
            pass  # a read-only location only costs a re-read next time


def default_cache_path(root: Path, split_key: str) -> Path:
    """``<root>/.sepkit/`` when writable, else ``~/.cache/sepkit/validation/``."""
    name = "validation-" + hashlib.sha1(split_key.encode()).hexdigest()[:12] + ".json"
    local = root / ".sepkit"
    if os.access(root, os.W_OK):
        return local / name
    return Path.home() / ".cache" / "sepkit" / "validation" / name


def inspect_all(
    paths: Iterable[Path], cache: FactsCache, threads: int = 4
) -> dict[Path, FileFacts]:
    """Facts of every path, from the cache when fresh; files are read in a few threads
    (libsndfile releases the GIL) so a large corpus is validated at disk speed."""
    out: dict[Path, FileFacts] = {}
    todo: list[tuple[Path, os.stat_result]] = []
    for p in dict.fromkeys(paths):
        try:
            st = p.stat()
        except OSError:
            out[p] = FileFacts(error="missing file")
            continue
        hit = cache.get(p, st)
        if hit is None:
            todo.append((p, st))
        else:
            out[p] = hit
    if todo:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for (p, st), facts in zip(
                todo, pool.map(lambda t: inspect_file(t[0]), todo), strict=True
            ):
                out[p] = facts
                if not facts.error.startswith("missing"):
                    cache.put(p, st, facts)
    return out


def check_records(
    records: Sequence[Record], facts: dict[Path, FileFacts], sample_rate: int, use_noise: bool
) -> list[Problem]:
    """Every problem of every record (a record can have several)."""
    problems: list[Problem] = []
    for r in records:
        files = [("mix", r.mix), *((f"s{k + 1}", s) for k, s in enumerate(r.sources))]
        if r.noise is not None and use_noise:
            files.append(("noise", r.noise))
        lengths: dict[str, int] = {}
        for role, path in files:
            f = facts[path]
            if f.error:
                problems.append(Problem(r.id, str(path), f.error))
                continue
            if f.rate != sample_rate:
                problems.append(
                    Problem(r.id, str(path), f"sample rate {f.rate} Hz, expected {sample_rate} Hz")
                )
            if f.channels != 1:
                problems.append(Problem(r.id, str(path), f"channels: {f.channels}, expected 1"))
            if f.nonfinite:
                problems.append(Problem(r.id, str(path), "non-finite samples (NaN or inf)"))
            if f.silent and role.startswith("s"):
                problems.append(Problem(r.id, str(path), "silent source: all samples are zero"))
            lengths[role] = f.frames
        problems += _length_problems(r.id, dict(files), lengths)
    return problems


def _length_problems(rid: str, paths: dict[str, Path], lengths: dict[str, int]) -> list[Problem]:
    """Name the file(s) whose length differs from the example's usual one.

    The usual length is the one most files share (the mixture's on a tie): a mixture cut short
    names the mixture, not its intact sources, so the message points at the file to re-create.
    """
    if len(set(lengths.values())) <= 1:
        return []
    votes = Counter(lengths.values())
    usual = max(votes, key=lambda n: (votes[n], n == lengths.get("mix")))
    return [
        Problem(
            rid, str(paths[role]), f"length mismatch: {n} samples, the other files have {usual}"
        )
        for role, n in lengths.items()
        if n != usual
    ]
