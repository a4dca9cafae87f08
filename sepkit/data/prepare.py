"""``sepkit prepare``: a separation corpus from a folder of single-speaker recordings.

The output (``--out``) is an ordinary sepkit corpus root::

    train.csv                 the training speakers' recordings (id, path, speaker, gender,
                              frames): mixed on the fly, fresh mixtures every epoch
    train/<speaker>/*.flac    recordings that had to be converted (rate, channels); recordings
                              already at the rate are read where they are
    valid.csv, test.csv       fixed mixtures of held-out speakers (id, mix_path, s1_path, ...,
                              speaker_1, ..., gender_1, ...; with --noise also noise_path,
                              noise_snr_db, noise_file, noise_start, noise_stop)
    valid/, test/             their audio: mix/, s1/, s2/ ... [noise/] (32-bit float WAV,
                              mix = sum of sources [+ noise]), and utterances/, the held-out
                              recordings they were cut from
    speakers.csv              each speaker's split and gender
    bad_recordings.csv        with --skip-bad: the recordings left out, and why
    corpus.json               the settings, a fingerprint of the input, and a summary

Splits are speaker-disjoint and deterministic: the speakers are sorted, shuffled with ``--seed``
within each gender, and dealt to test, validation and training in turn, so each split keeps the
corpus's gender balance. Valid and test mixtures are written once so that their scores are
reproducible; they follow the same level convention and silence-avoiding crops as the training
mixtures (:mod:`sepkit.data.dynamic_mixing`). With ``--noise`` they also get noise at an SNR drawn
from ``--noise-snr-db``, from the validation and test parts of the noise recordings, which
training never hears (:mod:`sepkit.data.noise`); ``noise_file``/``noise_start``/``noise_stop``
say which part of which recording (in its own frames). The clean mixtures are the same as
without ``--noise``: the noise has its own random stream. ``--reverb`` plays each mixture in a
room of its own, held out from training's (:mod:`sepkit.data.reverb`): ``mix`` = sum of
``s1_reverb/`` ... [+ noise], ``s1/`` ... the room's targets; the row records the room.

Every recording is read before anything is written. Unreadable files, NaN samples, silent or too
short recordings are all listed at once, naming each file (``--skip-bad`` leaves them out
instead). Recordings at another sample rate are resampled, and the summary says how many. The
command never modifies its input, and writes only into an empty folder or a corpus it made.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from sepkit.data.audio import active_rms, resample_exact
from sepkit.data.augment import example_rng
from sepkit.data.corpus import Record
from sepkit.data.dynamic_mixing import DynamicMixer
from sepkit.data.errors import DataError, Problem, format_problems, write_bad_examples
from sepkit.data.noise import NoisePool, held_out_pools, noise_files
from sepkit.data.noise import fingerprint as noise_fingerprint
from sepkit.data.recordings import Recording, scan_recordings
from sepkit.data.reverb import describe_rooms, held_out_mixture, held_out_rooms
from sepkit.data.rooms import RoomConfig
from sepkit.utils.io import atomic_write_csv, atomic_write_text, atomic_write_with

log = logging.getLogger(__name__)

CORPUS_FORMAT = "sepkit-recordings"
CORPUS_VERSION = 1
#: Quieter than this (active RMS, dBFS) a recording holds no usable speech.
SILENT_DB = -70.0
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class PrepareSpec:
    """How a corpus is cut from the recordings. Held-out speaker counts of 0 mean 5 % (valid)
    and 10 % (test) of the speakers, at least ``num_spks`` each."""

    sample_rate: int = 8000
    num_spks: int = 2
    valid_speakers: int = 0
    test_speakers: int = 0
    n_valid: int = 150
    n_test: int = 200
    mix_seconds: float = 4.0
    gain_db: float = 5.0
    min_seconds: float = 1.0
    seed: int = 0
    # none | shipped | a folder of noise recordings: noisy valid/test mixtures (held-out noise).
    noise: str = "none"
    noise_snr_db: tuple[float, float] = (-6.0, 3.0)  # WHAM!'s range and convention (data/noise.py)
    # Reverberant valid/test mixtures in held-out rooms like these (--reverb); None = dry.
    room: RoomConfig | None = None


@dataclass
class _Checked:
    recording: Recording
    rate: int
    frames: int  # at the corpus's rate
    convert: bool
    problem: str = ""


def _check(rec: Recording, spec: PrepareSpec) -> _Checked:
    """Read one recording whole: is it usable speech, and must it be converted?"""
    try:
        data, rate = sf.read(str(rec.path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        what = "missing file" if not rec.path.exists() else f"unreadable: not audio ({err})"
        return _Checked(rec, 0, 0, False, what)
    frames = round(data.shape[0] * spec.sample_rate / rate)
    convert = rate != spec.sample_rate or data.shape[1] != 1
    if not np.isfinite(data).all():
        return _Checked(rec, rate, frames, convert, "non-finite samples (NaN or inf)")
    if frames < spec.min_seconds * spec.sample_rate:
        return _Checked(
            rec, rate, frames, convert, f"too short: {data.shape[0] / rate:.2f} s, "
            f"the least is {spec.min_seconds:g} s (--min-seconds)"
        )  # fmt: skip
    level_db = 20 * np.log10(active_rms(data.mean(axis=1), rate) + 1e-20)
    if level_db < SILENT_DB:
        return _Checked(rec, rate, frames, convert, f"silent: speech level {level_db:.0f} dBFS")
    return _Checked(rec, rate, frames, convert)


def _load(rec: Recording, rate: int) -> np.ndarray:
    data, file_rate = sf.read(str(rec.path), dtype="float32", always_2d=True)
    return resample_exact(data.mean(axis=1), int(file_rate), rate)


def assign_speakers(
    genders: dict[str, str], spec: PrepareSpec
) -> dict[str, str]:  # fmt: skip
    """Speaker -> split: sorted, shuffled within each gender with ``spec.seed``, then dealt to
    test, valid and train in turn, alternating genders, so every split keeps the balance."""
    n = len(genders)
    n_test = spec.test_speakers or max(spec.num_spks, round(0.10 * n))
    n_valid = spec.valid_speakers or max(spec.num_spks, round(0.05 * n))
    needed = n_test + n_valid + spec.num_spks
    if n_test < spec.num_spks or n_valid < spec.num_spks or n < needed:
        raise DataError(
            f"{n} speaker(s) found: {spec.num_spks}-speaker mixtures need at least "
            f"{spec.num_spks} speakers in each of training, validation and test, which share no "
            f"speaker ({needed} with --test-speakers {n_test} --valid-speakers {n_valid})"
        )
    rng = np.random.default_rng(spec.seed)
    groups = []
    for gender in sorted({*genders.values()}):
        members = sorted(s for s, g in genders.items() if g == gender)
        groups.append([members[i] for i in rng.permutation(len(members))])
    # Deal in proportion to each group's size: the next speaker comes from the group that has
    # given the smallest share of its members so far.
    order: list[str] = []
    taken = [0] * len(groups)
    while len(order) < n:
        k = min(
            (i for i in range(len(groups)) if taken[i] < len(groups[i])),
            key=lambda i: (taken[i] / len(groups[i]), i),
        )
        order.append(groups[k][taken[k]])
        taken[k] += 1
    split = {s: "test" for s in order[:n_test]}
    split.update({s: "valid" for s in order[n_test : n_test + n_valid]})
    split.update({s: "train" for s in order[n_test + n_valid :]})
    return split


def fingerprint(recordings: list[Recording]) -> str:
    """Hash of every recording's path, speaker, size and modification time."""
    digest = hashlib.sha256()
    for rec in recordings:
        st = rec.path.stat() if rec.path.exists() else None
        size, mtime = (st.st_size, st.st_mtime_ns) if st else (-1, -1)
        digest.update(f"{rec.path}|{rec.speaker}|{size}|{mtime}\n".encode())
    return digest.hexdigest()


def _existing(out: Path) -> dict[str, Any] | None:
    """The corpus.json of a corpus this command made in ``out``; a :class:`DataError` when
    ``out`` holds anything else, so that no user file is ever overwritten."""
    meta_path = out / "corpus.json"
    if not out.exists():
        return None
    if not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder; choose another --out")
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError:
            meta = {}
        if meta.get("format") == CORPUS_FORMAT:
            return dict(meta)
    if any(out.iterdir()):
        raise DataError(
            f"{out}: the folder is not empty and is not a corpus made by sepkit prepare; "
            "choose an empty or new --out (nothing was written)"
        )
    return None


def prepare_corpus(
    source: Path,
    out: Path,
    spec: PrepareSpec = PrepareSpec(),
    *,
    skip_bad: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Build (or reuse, when complete with the same input and settings) the corpus in ``out``.

    Returns the summary also stored in ``corpus.json``. Raises :class:`DataError` naming the file
    or folder for input it cannot use.
    """
    source, out = Path(source).expanduser(), Path(out).expanduser()
    scan = scan_recordings(source)
    room = held_out_rooms(spec.room, spec.sample_rate)  # checked before anything is written
    # A dry corpus keeps the key it had before rooms existed.
    spec_key = {k: v for k, v in asdict(replace(spec, room=room)).items() if k != "room" or room}
    key: dict[str, Any] = {
        "spec": spec_key,
        "fingerprint": fingerprint(scan.recordings),
        "skip_bad": skip_bad,
    }
    pools = held_out_pools(  # bad noise files are named before anything is written
        spec.noise, spec.sample_rate, spec.noise_snr_db, spec.mix_seconds, "--noise"
    )
    if pools:
        key["noise"] = noise_fingerprint(noise_files(spec.noise, "--noise"))
    key = json.loads(json.dumps(key))  # as corpus.json stores it (tuples become lists)
    meta = _existing(out)
    if meta and meta.get("complete") and meta.get("key") == key:
        return {**meta["summary"], "reused": True}

    checked = _check_all(scan.recordings, spec, progress)
    problems = [
        Problem(f"{c.recording.speaker}/{c.recording.utterance}", str(c.recording.path), c.problem)
        for c in checked
        if c.problem
    ]
    if problems and not skip_bad:
        raise DataError(
            format_problems(
                f"{source}: {len(problems)} of {len(checked)} recordings cannot be used. Fix or "
                "remove them, or pass --skip-bad to leave them out (nothing was written):",
                problems,
            ),
            problems,
        )
    good = [c for c in checked if not c.problem]
    genders: dict[str, str] = {}
    for c in good:
        genders.setdefault(c.recording.speaker, c.recording.gender)
    if not genders:
        raise DataError(f"{source}: none of the {len(checked)} recordings can be used")
    split_of = assign_speakers(genders, spec)

    for name in (
        *SPLITS,
        "train.csv",
        "valid.csv",
        "test.csv",
        "speakers.csv",
        "bad_recordings.csv",
    ):
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    # Marks the folder as this command's before anything else is written, so that a run cut
    # short can be repeated: the next run finds an incomplete corpus of its own and redoes it.
    pending = {"format": CORPUS_FORMAT, "version": CORPUS_VERSION, "complete": False, "key": key}
    atomic_write_text(out / "corpus.json", json.dumps(pending, indent=2) + "\n")
    if problems:
        write_bad_examples(out / "bad_recordings.csv", problems)
        log.warning("left out %d bad recording(s), listed in %s", len(problems), out)

    train_rows = _write_training(
        out, [c for c in good if split_of[c.recording.speaker] == "train"], spec
    )
    summary: dict[str, Any] = {
        "source": str(source),
        "layout": scan.layout,
        "out": str(out),
        "sample_rate": spec.sample_rate,
        "recordings": len(good),
        "bad_recordings": len(problems),
        "ignored_files": len(scan.ignored),
        "resampled": dict(
            Counter(f"{c.rate} Hz" for c in good if c.rate != spec.sample_rate).most_common()
        ),
        "single_recording_speakers": sum(
            1 for n in Counter(c.recording.speaker for c in good).values() if n == 1
        ),
        "speakers": dict(Counter(split_of.values())),
        "genders": {
            split: dict(Counter(genders[s] or "?" for s, sp in split_of.items() if sp == split))
            for split in SPLITS
        },
        "train_recordings": len(train_rows),
        "train_seconds": round(sum(int(r["frames"]) for r in train_rows) / spec.sample_rate, 1),
    }
    for split, count, stream in (("valid", spec.n_valid, 1), ("test", spec.n_test, 2)):
        members = [c for c in good if split_of[c.recording.speaker] == split]
        summary[f"{split}_mixtures"] = _write_mixtures(
            out, split, members, count, spec, stream, pools.get(split), room
        )
    if pools:
        summary["noise"] = {"pool": spec.noise, "snr_db": list(spec.noise_snr_db)}
    summary.update({"reverb": {"rt60": list(room.rt60), "target": room.target}} if room else {})
    atomic_write_csv(
        out / "speakers.csv",
        [{"speaker": s, "split": split_of[s], "gender": genders[s]} for s in sorted(split_of)],
    )
    record = {"format": CORPUS_FORMAT, "version": CORPUS_VERSION, "complete": True, "key": key,
              "summary": summary}  # fmt: skip
    atomic_write_text(out / "corpus.json", json.dumps(record, indent=2) + "\n")
    return {**summary, "reused": False}


def _check_all(recordings: list[Recording], spec: PrepareSpec, progress: bool) -> list[_Checked]:
    with ThreadPoolExecutor(max_workers=4) as pool:  # libsndfile decodes without the GIL
        jobs: Iterable[_Checked] = pool.map(lambda r: _check(r, spec), recordings)
        if progress:
            from tqdm import tqdm

            jobs = tqdm(jobs, total=len(recordings), desc="reading", unit="file")
        return list(jobs)


def _unique_ids(items: list[_Checked]) -> list[str]:
    seen: Counter[str] = Counter()
    ids = []
    for c in items:
        base = f"{c.recording.speaker}/{c.recording.utterance}"
        seen[base] += 1
        ids.append(base if seen[base] == 1 else f"{base}~{seen[base]}")
    return ids


def _write_training(out: Path, items: list[_Checked], spec: PrepareSpec) -> list[dict[str, Any]]:
    """``train.csv``; converts the recordings that are not mono at the corpus's rate."""
    rows = []
    for rid, c in zip(_unique_ids(items), items, strict=True):
        path = c.recording.path.resolve()
        if c.convert:
            path = out / "train" / c.recording.speaker / f"{rid.split('/', 1)[1]}.flac"
            _write_flac(path, _load(c.recording, spec.sample_rate), spec.sample_rate)
        shown = path.relative_to(out) if path.is_relative_to(out) else path
        rows.append({"id": rid, "path": shown.as_posix(), "speaker": c.recording.speaker,
                     "gender": c.recording.gender, "frames": c.frames})  # fmt: skip
    atomic_write_csv(out / "train.csv", rows)
    return rows


def _write_flac(path: Path, x: np.ndarray, rate: int) -> None:
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak > 1.0:  # 16-bit FLAC cannot hold it; the mixer normalises levels anyway
        x = x / peak
    atomic_write_with(path, lambda h: sf.write(h, x, rate, format="FLAC", subtype="PCM_16"))


def _write_wav(path: Path, x: np.ndarray, rate: int) -> None:
    """32-bit float, so that a mixture is exactly the sum of its sources."""
    atomic_write_with(path, lambda h: sf.write(h, x, rate, format="WAV", subtype="FLOAT"))


def _write_mixtures(
    out: Path,
    split: str,
    items: list[_Checked],
    count: int,
    spec: PrepareSpec,
    stream: int,
    noise: NoisePool | None = None,
    room: RoomConfig | None = None,
) -> int:
    """``count`` fixed mixtures of ``items``' speakers: ``<split>/`` audio and ``<split>.csv``."""
    folder = out / split / "utterances"
    records, frames = [], {}
    for rid, c in zip(_unique_ids(items), items, strict=True):
        path = folder / c.recording.speaker / f"{rid.split('/', 1)[1]}.flac"
        x = _load(c.recording, spec.sample_rate)
        _write_flac(path, x, spec.sample_rate)
        frames[path] = len(x)
        records.append(Record(rid, path, (path,), None, (c.recording.speaker,)))
    gender = {c.recording.speaker: c.recording.gender for c in items}
    mixer = DynamicMixer(records, frames, spec.num_spks, spec.sample_rate, gain_db=spec.gain_db)
    target = round(spec.mix_seconds * spec.sample_rate) if spec.mix_seconds > 0 else None
    rows = []
    for i in range(count):
        sources, speakers = mixer.make(example_rng(spec.seed, 0, i, 100 + stream), target)
        mid = f"{split}{i:04d}_{'_'.join(speakers)}"
        row: dict[str, Any] = {"id": mid, "mix_path": f"{split}/mix/{mid}.wav"}
        mix, noisy, tracks = sources.sum(axis=0), None, {"": sources}
        noise_rng = example_rng(spec.seed, 0, i, 200 + stream)
        if room is not None:  # rooms and noise have their own streams: the dry part is the same
            rev = held_out_mixture(room, spec.seed, i, stream, sources, noise, noise_rng)
            mix, noisy, tracks = rev.mix, rev.noisy, {"": rev.targets, "_reverb": rev.reverberant}
            row.update(rev.columns)
        elif noise is not None:  # its own stream: the clean part is the same as without noise
            noisy = noise.add(noise_rng, sources)
            mix, tracks[""] = noisy.sources.sum(axis=0) + noisy.noise, noisy.sources
        _write_wav(out / row["mix_path"], mix, spec.sample_rate)
        for kind, x in tracks.items():
            for k, s in enumerate(x):
                row[f"s{k + 1}{kind}_path"] = f"{split}/s{k + 1}{kind}/{mid}.wav"
                _write_wav(out / row[f"s{k + 1}{kind}_path"], s, spec.sample_rate)
        if noisy is not None:
            row["noise_path"] = f"{split}/noise/{mid}.wav"
            _write_wav(out / row["noise_path"], noisy.noise, spec.sample_rate)
            row.update(noise_snr_db=round(noisy.snr_db, 4), noise_file=noisy.segment.path.name,
                       noise_start=noisy.start, noise_stop=noisy.stop)  # fmt: skip
        row.update({f"speaker_{k + 1}": s for k, s in enumerate(speakers)})
        if all(gender[s] for s in speakers):
            row.update({f"gender_{k + 1}": gender[s] for k, s in enumerate(speakers)})
        rows.append(row)
    atomic_write_csv(out / f"{split}.csv", rows)
    return count


def describe(summary: dict[str, Any]) -> str:
    """What a person needs to know about the corpus just made, in a few lines."""
    spk = summary["speakers"]
    lines = [
        f"corpus {summary['out']} ({'reused' if summary.get('reused') else 'written'}): "
        f"{summary['recordings']} recordings of {sum(spk.values())} speakers from "
        f"{summary['source']} ({summary['layout']})",
        f"  speakers: {spk.get('train', 0)} training, {spk.get('valid', 0)} validation, "
        f"{spk.get('test', 0)} test (no speaker in two splits)",
        f"  training: {summary['train_seconds'] / 60:.1f} min of speech, mixed on the fly; "
        f"fixed mixtures: {summary['valid_mixtures']} validation, {summary['test_mixtures']} test",
    ]
    if summary["resampled"]:
        rates = ", ".join(f"{n} at {r}" for r, n in summary["resampled"].items())
        lines.append(f"  resampled to {summary['sample_rate']} Hz: {rates}")
    if summary.get("noise"):
        lo, hi = summary["noise"]["snr_db"]
        lines.append(
            f"  noise: {summary['noise']['pool']} at {lo:g} to {hi:g} dB SNR in valid/test "
            "(held-out parts of each noise recording)"
        )
    lines += describe_rooms(summary)
    if summary["bad_recordings"]:
        lines.append(f"  left out {summary['bad_recordings']} bad recordings (bad_recordings.csv)")
    if summary["ignored_files"]:
        lines.append(f"  ignored {summary['ignored_files']} files that are not audio")
    return "\n".join(lines)
