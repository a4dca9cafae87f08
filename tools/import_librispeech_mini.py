"""Copy the steering side's librispeech-mini into the package, cut down to what the demo needs.

Run once by a developer (the product never reads ``../shared``)::

    python tools/import_librispeech_mini.py ../shared/data/librispeech-mini

Each 16 kHz FLAC becomes an 8 kHz, 16-bit FLAC (soxr, very high quality) in the LibriSpeech
layout ``SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTT.flac``, so the demo goes through the same reader a
user's LibriSpeech copy does. ``SPEAKERS.TXT`` keeps each speaker's gender in LibriSpeech's own
format, and ``SHA256SUMS`` lists every file for the integrity test.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

TARGET = Path(__file__).resolve().parent.parent / "sepkit" / "corpora" / "librispeech-mini"
RATE = 8000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("source", type=Path, help="the librispeech-mini folder")
    parser.add_argument("--out", type=Path, default=TARGET)
    args = parser.parse_args()
    src: Path = args.source
    out: Path = args.out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    with (src / "speakers.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    lines = [
        "; Speakers of librispeech-mini (LibriSpeech train-clean-100), LibriSpeech's format:",
        ";ID  |SEX| SUBSET           |MINUTES| NAME",
    ]
    for row in sorted(rows, key=lambda r: int(r["speaker"])):
        spk, _chapter, _utt = row["utterance"].split("-")
        data, rate = sf.read(str(src / "audio" / f"{row['utterance']}.flac"), dtype="float64")
        y = soxr.resample(data, rate, RATE, quality="VHQ")
        y = np.clip(y, -1.0, 32767 / 32768)
        folder = out / spk / _chapter
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(str(folder / f"{row['utterance']}.flac"), y, RATE, subtype="PCM_16")
        minutes = len(y) / RATE / 60
        lines.append(f"{spk:<5}| {row['gender']} | train-clean-100  | {minutes:5.2f} | -")
    (out / "SPEAKERS.TXT").write_text("\n".join(lines) + "\n")
    shutil.copy(src / "LICENSE.TXT", out / "LICENSE.TXT")
    (out / "README.md").write_text(README)
    sums = []
    for path in sorted(p for p in out.rglob("*") if p.is_file() and p.name != "SHA256SUMS"):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        sums.append(f"{digest}  {path.relative_to(out).as_posix()}")
    (out / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    print(f"{len(rows)} utterances -> {out}")


README = """\
# librispeech-mini (8 kHz): the real speech sepkit's demo trains and tests on

One read utterance (about 12.5 s) from each of 200 speakers (100 female, 100 male) of the
LibriSpeech ASR corpus's train-clean-100 subset, in LibriSpeech's own layout
(`SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTTERANCE.flac`, genders in `SPEAKERS.TXT`). Resampled from
16 kHz to 8 kHz (soxr, very high quality) and stored as 16-bit FLAC; otherwise unchanged.
`SHA256SUMS` lists every file; `tests/data/test_shipped_corpus.py` checks them.

LibriSpeech ASR corpus: V. Panayotov, G. Chen, D. Povey and S. Khudanpur, "Librispeech: an ASR
corpus based on public domain audio books", ICASSP 2015. Copyright 2014 Vassil Panayotov.
Licensed under Creative Commons Attribution 4.0 International (CC BY 4.0): see `LICENSE.TXT`.
"""

if __name__ == "__main__":
    main()
