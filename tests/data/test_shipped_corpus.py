"""The real speech shipped inside the package: intact, licensed, credited, and what the demo needs."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import soundfile as sf

from sepkit.data.recordings import read_genders, scan_recordings
from sepkit.demo import REAL_SPEECH

ROOT = Path(__file__).parents[2]


def test_every_file_matches_its_checksum() -> None:
    listed = {}
    for line in (REAL_SPEECH / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        listed[name] = digest
    present = {
        p.relative_to(REAL_SPEECH).as_posix()
        for p in REAL_SPEECH.rglob("*")
        if p.is_file() and p.name != "SHA256SUMS"
    }
    assert present == set(listed), "files added or removed since SHA256SUMS was written"
    bad = [
        n
        for n, d in listed.items()
        if hashlib.sha256((REAL_SPEECH / n).read_bytes()).hexdigest() != d
    ]
    assert not bad, f"changed files: {bad[:5]}"


def test_200_speakers_in_librispeech_layout_at_8_khz() -> None:
    scan = scan_recordings(REAL_SPEECH)
    assert len(scan.recordings) == 200
    assert len({r.speaker for r in scan.recordings}) == 200
    for rec in scan.recordings[::20]:
        info = sf.info(str(rec.path))
        assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "PCM_16")
        spk, chapter, _ = rec.path.stem.split("-")
        assert rec.path.parent.name == chapter and rec.path.parent.parent.name == spk
    assert Counter(read_genders(REAL_SPEECH).values()) == {"F": 100, "M": 100}


def test_licence_and_credit_ship_with_it() -> None:
    assert "Attribution 4.0" in (REAL_SPEECH / "LICENSE.TXT").read_text()
    assert "Panayotov" in (REAL_SPEECH / "README.md").read_text()
    assert "Panayotov" in (ROOT / "README.md").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"corpora/librispeech-mini/**/*"' in pyproject  # package data: it ships in the wheel
