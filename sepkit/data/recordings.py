"""Find single-speaker recordings and their speakers: the raw material of on-the-fly mixing.

Users have LibriSpeech, VCTK or folders of their own recordings, not ready-made mixtures. Three
ways to say which file is whose voice:

* a folder whose first level is one folder per speaker, with the audio anywhere below it:
  LibriSpeech (``SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTT.flac``), VCTK (``pXXX/pXXX_001.wav``),
  or ``my-recordings/alice/*.wav``;
* a CSV file with the columns ``path,speaker`` (and optionally ``gender``), paths relative to the
  CSV's folder or absolute.

Genders (used only to report same-gender and female-male scores separately) come from the CSV's
``gender`` column, from LibriSpeech's ``SPEAKERS.TXT`` or VCTK's ``speaker-info.txt`` found in the
folder or above it, or from a ``speakers.csv`` (``speaker,gender``) in the folder.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from sepkit.data.errors import DataError, Problem

#: File endings read as audio (whatever libsndfile decodes). Other files (LibriSpeech's
#: ``.trans.txt``, READMEs) are not recordings and are counted, not read.
AUDIO_SUFFIXES = (".flac", ".wav", ".ogg", ".opus", ".mp3", ".aif", ".aiff")


@dataclass(frozen=True)
class Recording:
    """One single-speaker recording. ``gender`` is ``F``, ``M`` or empty (unknown)."""

    path: Path
    speaker: str
    gender: str = ""

    @property
    def utterance(self) -> str:
        return self.path.stem


@dataclass
class Scan:
    """What :func:`scan_recordings` found: recordings, and files it did not take as audio."""

    recordings: list[Recording]
    ignored: list[Path]
    layout: str


def scan_recordings(source: Path) -> Scan:
    """Every recording under ``source`` (a speaker-per-folder tree or a ``path,speaker`` CSV).

    Raises :class:`DataError` naming ``source`` when it does not exist or holds no audio file.
    """
    source = Path(source).expanduser()
    if source.is_file():
        return _scan_csv(source)
    if not source.is_dir():
        raise DataError(f"{source}: no such folder or CSV file of single-speaker recordings")
    recordings: list[Recording] = []
    ignored: list[Path] = []
    loose: list[Path] = []
    genders = read_genders(source)
    for child in sorted(source.iterdir()):
        if child.name.startswith("."):
            continue
        if child.is_file():  # metadata (SPEAKERS.TXT, README) sits here; audio must not
            if child.suffix.lower() in AUDIO_SUFFIXES:
                loose.append(child)
            continue
        for path in sorted(p for p in child.rglob("*") if p.is_file()):
            if any(part.startswith(".") for part in path.relative_to(child).parts):
                continue
            if path.suffix.lower() in AUDIO_SUFFIXES:
                recordings.append(Recording(path, child.name, genders.get(child.name, "")))
            else:
                ignored.append(path)
    if not recordings:
        found = f" ({len(loose)} audio files lie directly in it)" if loose else ""
        raise DataError(
            f"{source}: no recordings found{found}. Expected one folder per speaker with the "
            f"audio below it (LibriSpeech SPEAKER/CHAPTER/*.flac, VCTK pXXX/*.wav; endings "
            f"{', '.join(AUDIO_SUFFIXES)}), or a CSV file with the columns path,speaker"
        )
    if loose:
        raise DataError(
            f"{source}: {len(loose)} audio file(s) lie directly in the folder, where no speaker "
            f"folder names their speaker (first: {loose[0].name}). Move each into a folder named "
            "after its speaker, or list the files in a CSV with the columns path,speaker",
            [Problem("-", str(p), "no speaker folder") for p in loose],
        )
    return Scan(recordings, ignored, "speaker folders")


def _scan_csv(path: Path) -> Scan:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text; save the CSV as UTF-8") from err
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in ("path", "speaker") if c not in header]
    if missing:
        raise DataError(
            f"{path}: missing column {', '.join(missing)} (header: {', '.join(header) or 'none'});"
            " a CSV of recordings needs the columns path,speaker (and optionally gender)"
        )
    recordings: list[Recording] = []
    problems: list[Problem] = []
    for row in reader:
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        if not row.get("path") or not row.get("speaker"):
            problems.append(Problem(f"line {reader.line_num}", str(path), "incomplete row"))
            continue
        file = Path(row["path"]).expanduser()
        file = file if file.is_absolute() else path.parent / file
        gender = _gender(row.get("gender", ""))
        recordings.append(Recording(file, row["speaker"], gender))
    if problems:
        raise DataError(
            f"{path}: {len(problems)} row(s) without a path or a speaker (first: "
            f"{problems[0].id}); complete or delete them",
            problems,
        )
    if not recordings:
        raise DataError(f"{path}: lists no recordings")
    return Scan(recordings, [], f"CSV {path.name}")


def _gender(text: str) -> str:
    g = text.strip().upper()[:1]
    return g if g in ("F", "M") else ""


def read_genders(folder: Path) -> dict[str, str]:
    """Speaker -> ``F``/``M`` from the metadata files that corpora ship (empty when none)."""
    candidates = [folder / "speakers.csv"]
    for parent in (folder, *list(folder.parents)[:2]):
        candidates += [parent / "SPEAKERS.TXT", parent / "speaker-info.txt"]
    for file in candidates:
        if not file.is_file():
            continue
        text = file.read_text(encoding="utf-8", errors="replace")
        if file.name == "speakers.csv":
            rows = csv.DictReader(io.StringIO(text))
            found = {r["speaker"]: _gender(r.get("gender", "")) for r in rows if r.get("speaker")}
        elif file.name == "SPEAKERS.TXT":  # ";ID  |SEX| SUBSET |MINUTES| NAME"
            found = {}
            for line in text.splitlines():
                parts = [p.strip() for p in line.split("|")]
                if line.startswith(";") or len(parts) < 2:
                    continue
                found[parts[0]] = _gender(parts[1])
        else:  # VCTK: "ID  AGE  GENDER  ACCENTS  REGION", IDs without the "p"
            found = {}
            for line in text.splitlines()[1:]:
                parts = line.split()
                if len(parts) >= 3:
                    spk = parts[0] if parts[0].startswith("p") else f"p{parts[0]}"
                    found[spk] = _gender(parts[2])
        if found:
            return {k: v for k, v in found.items() if v}
    return {}
