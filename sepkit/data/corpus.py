"""Find the examples of a split in any supported corpus layout, for any number of sources.

Layouts (``data.format`` = ``auto`` tries them in this order):

* ``manifest``: our CSV (``id, mix_path, s1_path, ..., [noise_path], [speaker_1, ...]``), written by
  ``sepkit prepare-demo``; paths relative to the data root (or to the CSV's folder).
* ``librimix``: LibriMix metadata CSV (``mixture_ID, mixture_path, source_1_path, ...,
  [noise_path], length``). Absolute paths from the machine that generated the metadata are remapped
  under the data root when they do not exist here.
* ``utterances``: a CSV of single-speaker recordings (``id, path, speaker, [gender]``), written by
  ``sepkit prepare`` for the training split: there are no fixed mixtures, so the split can only be
  used with dynamic mixing (each record is one utterance; see :mod:`sepkit.data.dynamic_mixing`).
* ``wsj0-mix``: folders ``<split>/{mix,s1,s2[,s3...][,noise]}/<id>.wav`` (wsj0-2mix/3mix ``tr/cv/tt``;
  WHAM! ``mix_clean``/``mix_both`` folders; our own output folders). ``data.mix_folder`` names
  another mixture folder and ``data.source_folder_suffix`` the sources' suffix: WHAMR!'s
  ``mix_both_reverb`` with ``s1_anechoic``, ``s2_anechoic`` targets, say.

The split name (``data.train_split`` ...) may be a CSV file, a folder, or a name looked up under
the root with the usual aliases (train: tr, train-360, train-100; valid: cv, dev; test: tt).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from sepkit.data.config import DataConfig
from sepkit.data.errors import DataError, Problem

ALIASES: dict[str, tuple[str, ...]] = {
    "train": ("train", "tr", "train-360", "train-100"),
    "valid": ("valid", "cv", "dev", "val", "validation"),
    "test": ("test", "tt", "eval"),
}


@dataclass(frozen=True)
class Record:
    """One example on disk. ``speakers`` may be empty when the layout does not say.

    ``voices`` (optional, manifest columns ``family_1``...) groups speakers that are near-copies of
    one voice, as the built-in corpus's speakers made from one eSpeak variant family are: dynamic
    mixing never puts two of one voice into a mixture. Empty = every speaker is its own voice.
    """

    id: str
    mix: Path
    sources: tuple[Path, ...]
    noise: Path | None = None
    speakers: tuple[str, ...] = ()
    voices: tuple[str, ...] = ()
    genders: tuple[str, ...] = ()  # "F"/"M" per source, when the manifest says (gender_1...)


def _split_name(cfg: DataConfig, split: str) -> str:
    return {"train": cfg.train_split, "valid": cfg.valid_split, "test": cfg.test_split}.get(
        split, split
    )


def _candidates(name: str, split: str) -> list[str]:
    out = [name]
    for alias in ALIASES.get(split, ()):
        if alias not in out:
            out.append(alias)
    return out


def locate_split(cfg: DataConfig, split: str) -> tuple[str, Path]:
    """(layout, path) of a split: a CSV file (manifest/librimix) or a folder (wsj0-mix)."""
    root = Path(cfg.root).expanduser() if cfg.root else Path.cwd()
    name = _split_name(cfg, split)
    tried: list[str] = []
    mixes: set[str] = set()  # mixture folders of split folders that were not recognised
    for cand in _candidates(name, split):
        path = Path(cand).expanduser()
        paths = [path] if path.is_absolute() else [root / path]
        for p in paths:
            for csv_path in (p, p.with_name(p.name + ".csv")) if p.suffix != ".csv" else (p,):
                tried.append(str(csv_path))
                if csv_path.is_file() and cfg.format != "wsj0-mix":
                    layout = _csv_layout(csv_path)
                    if cfg.format in ("auto", layout):
                        return layout, csv_path
            tried.append(str(p) + "/")
            if p.is_dir() and cfg.format in ("auto", "wsj0-mix") and _mix_folder(p, cfg):
                return "wsj0-mix", p
            if p.is_dir():
                mixes |= {d.name for d in p.glob("mix*") if d.is_dir()}
    # LibriMix keeps its metadata in <root>/metadata/mixture_<split>_mix_<clean|both>.csv
    meta = root / "metadata"
    if meta.is_dir() and cfg.format in ("auto", "librimix"):
        kinds = ("both", "clean") if cfg.use_noise else ("clean", "both")
        for cand in _candidates(name, split):
            for kind in kinds:
                p = meta / f"mixture_{cand}_mix_{kind}.csv"
                tried.append(str(p))
                if p.is_file():
                    return "librimix", p
    if mixes:  # a folder layout with other mixture folders (WHAMR!'s mix_both_reverb ...)
        tried.insert(
            0, f"data.mix_folder={cfg.mix_folder or 'mix'} (found {', '.join(sorted(mixes))})"
        )
    raise DataError(
        f"data split {split!r} ({name!r}) not found under data.root={str(root)!r} "
        f"(format {cfg.format}). Looked for: {', '.join(tried[:12])}. Set data.root to the corpus "
        f"folder, or data.{split}_split to a CSV file or a folder with mix/ and s1/ ... inside."
    )


def _csv_layout(path: Path) -> str:
    header = next(csv.reader(io.StringIO(_read_csv_text(path))), [])
    if "mixture_ID" in header or "mixture_path" in header:
        return "librimix"
    if "path" in header and "speaker" in header and "mix_path" not in header:
        return "utterances"
    return "manifest"


def _read_csv_text(path: Path) -> str:
    """The text of a CSV file, as UTF-8 whatever the locale (a leading BOM, as spreadsheets write
    it, is dropped). A file in another encoding is a :class:`DataError` naming file and line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataError(
            f"{path}: not UTF-8 text (byte {data[err.start]:#04x} on line {line}); save the CSV "
            "as UTF-8",
            [Problem(f"line {line}", str(path), "not UTF-8")],
        ) from err


def _mix_folder(split_dir: Path, cfg: DataConfig) -> str | None:
    if cfg.mix_folder:  # named: that folder or none (WHAMR!'s mix_both_reverb, say)
        return cfg.mix_folder if (split_dir / cfg.mix_folder).is_dir() else None
    names = ("mix", "mix_both", "mix_clean") if cfg.use_noise else ("mix", "mix_clean", "mix_both")
    for n in names:
        if (split_dir / n).is_dir():
            return n
    return None


def load_records(cfg: DataConfig, split: str) -> tuple[list[Record], list[Problem], str]:
    """Records of a split, problems found while listing them, and the layout used.

    Structural problems that make a whole CSV unusable (missing columns) raise DataError at once.
    """
    layout, path = locate_split(cfg, split)
    root = Path(cfg.root).expanduser() if cfg.root else Path.cwd()
    if layout == "wsj0-mix":
        records, problems = _folder_records(path, cfg)
    elif layout == "utterances":
        records, problems = _utterance_records(path, root)
    else:
        records, problems = _csv_records(path, root, layout, cfg.num_spks)
    records, dup = _dedupe(records)
    return records, problems + dup, f"{layout}:{path}"


def _dedupe(records: list[Record]) -> tuple[list[Record], list[Problem]]:
    seen: set[str] = set()
    out, problems = [], []
    for r in records:
        if r.id in seen:
            problems.append(Problem(r.id, str(r.mix), "duplicate id (kept the first)"))
            continue
        seen.add(r.id)
        out.append(r)
    return out, problems


# ------------------------------------------------------------------------------------ folders


def _folder_records(split_dir: Path, cfg: DataConfig) -> tuple[list[Record], list[Problem]]:
    mix_name = _mix_folder(split_dir, cfg) or cfg.mix_folder or "mix"
    suffix = cfg.source_folder_suffix
    n_src = 0
    while (split_dir / f"s{n_src + 1}{suffix}").is_dir():
        n_src += 1
    if n_src == 0:
        found = sorted(p.name for p in split_dir.glob("s1*") if p.is_dir())
        hint = (
            f" It has {', '.join(found)}: set data.source_folder_suffix (WHAMR!: _anechoic for "
            "direct-path targets, with data.mix_folder=mix_both_reverb or mix_clean_reverb)"
            if found
            else ""
        )
        raise DataError(
            f"{split_dir}: no source folders s1{suffix}/, s2{suffix}/ ... next to {mix_name}/; a "
            f"wsj0-mix layout needs <split>/mix/<id>.wav and <split>/s1/<id>.wav ...{hint}"
        )
    noise_dir = split_dir / "noise"
    records = []
    for mix in sorted((split_dir / mix_name).glob("*.wav")):
        sources = tuple(split_dir / f"s{k + 1}{suffix}" / mix.name for k in range(n_src))
        noise = noise_dir / mix.name if noise_dir.is_dir() else None
        records.append(Record(mix.stem, mix, sources, noise, _speakers_from_name(mix.stem, n_src)))
    if not records:
        raise DataError(f"{split_dir / mix_name}: no .wav files; is data.root right?")
    return records, []


_FLOAT = re.compile(r"^-?\d+(\.\d+)?$")


def _speakers_from_name(stem: str, n_src: int) -> tuple[str, ...]:
    """Speaker IDs from wsj0-mix names (``011a010d_0.54_20do010c_-0.54``: speaker = first 3
    characters of each utterance) or LibriMix names (``19-198-0003_1088-134315-0007``)."""
    parts = stem.split("_")
    if len(parts) == 2 * n_src and all(_FLOAT.match(p) for p in parts[1::2]):
        return tuple(p[:3] for p in parts[0::2])
    if len(parts) == n_src and all(p.count("-") == 2 for p in parts):
        return tuple(p.split("-")[0] for p in parts)
    return ()


# ---------------------------------------------------------------------------------------- CSV


def _csv_records(
    path: Path, root: Path, layout: str, num_spks: int
) -> tuple[list[Record], list[Problem]]:
    """Records of a manifest or LibriMix CSV with ``num_spks`` (or more) source columns.

    A missing column makes the whole file unusable (DataError at once); a row with empty or
    missing cells (a write cut short, a hand edit) is one bad example, reported like a bad file.
    """
    try:
        reader = csv.DictReader(io.StringIO(_read_csv_text(path), newline=""))
        header = list(reader.fieldnames or [])
        rows = [(reader.line_num, row) for row in reader]
    except csv.Error as err:
        raise DataError(
            f"{path}: not a valid CSV file (line {reader.line_num}: {err})",
            [Problem(f"line {reader.line_num}", str(path), f"not a valid CSV file: {err}")],
        ) from err
    if layout == "librimix":
        id_col, mix_col, src_fmt, spk_fmt = "mixture_ID", "mixture_path", "source_{}_path", None
    else:
        id_col, mix_col, src_fmt, spk_fmt = "id", "mix_path", "s{}_path", "speaker_{}"
    n_src = 0
    while src_fmt.format(n_src + 1) in header:
        n_src += 1
    _require_columns(path, layout, header, [id_col, mix_col], src_fmt, n_src, num_spks)
    resolve = _Resolver(root, path.parent)
    records: list[Record] = []
    problems: list[Problem] = []
    src_cols = [src_fmt.format(k + 1) for k in range(n_src)]
    for line, row in rows:
        rid = (row.get(id_col) or "").strip()
        empty = [c for c in (mix_col, *src_cols) if not (row.get(c) or "").strip()]
        if not rid or empty:
            what = id_col if not rid else ", ".join(empty)
            problems.append(
                Problem(
                    rid or f"line {line}", str(path), f"incomplete row: line {line} has no {what}"
                )
            )
            continue
        sources = tuple(resolve(row[c]) for c in src_cols)
        noise = resolve(row["noise_path"]) if row.get("noise_path") else None
        if spk_fmt and all(row.get(spk_fmt.format(k + 1)) for k in range(n_src)):
            speakers = tuple(row[spk_fmt.format(k + 1)] for k in range(n_src))
        else:
            speakers = _speakers_from_name(rid, n_src)
        voices = tuple(row.get(f"family_{k + 1}") or "" for k in range(n_src))
        voices = voices if speakers and all(voices) else ()
        genders = tuple(row.get(f"gender_{k + 1}") or "" for k in range(n_src))
        genders = genders if all(genders) else ()
        records.append(
            Record(rid, resolve(row[mix_col]), sources, noise, speakers, voices, genders)
        )
    return records, problems


def _utterance_records(path: Path, root: Path) -> tuple[list[Record], list[Problem]]:
    """One single-source record per row of an ``utterances`` CSV (``id, path, speaker``)."""
    reader = csv.DictReader(io.StringIO(_read_csv_text(path), newline=""))
    resolve = _Resolver(root, path.parent)
    records: list[Record] = []
    problems: list[Problem] = []
    for row in reader:
        file, speaker = (row.get("path") or "").strip(), (row.get("speaker") or "").strip()
        rid = (row.get("id") or "").strip() or file
        if not file or not speaker:
            what = "path" if not file else "speaker"
            line = reader.line_num
            problems.append(
                Problem(
                    rid or f"line {line}", str(path), f"incomplete row: line {line} has no {what}"
                )
            )
            continue
        p = resolve(file)
        gender = (row.get("gender") or "").strip()
        records.append(Record(rid, p, (p,), None, (speaker,), (), (gender,) if gender else ()))
    return records, problems


def _require_columns(
    path: Path,
    layout: str,
    header: list[str],
    fixed: list[str],
    src_fmt: str,
    n_src: int,
    num_spks: int,
) -> None:
    """DataError naming every missing column: the fixed ones and sources 1..``num_spks``."""
    missing = [c for c in fixed if c not in header]
    missing += [src_fmt.format(k) for k in range(n_src + 1, num_spks + 1)]
    if not missing:
        return
    needed = ", ".join([*fixed, *(src_fmt.format(k + 1) for k in range(num_spks))])
    raise DataError(
        f"{path}: missing column {', '.join(missing)} (header: {', '.join(header)}). "
        f"A {layout} CSV with data.num_spks={num_spks} needs {needed}",
        [Problem("-", str(path), f"missing column {c}") for c in missing],
    )


class _Resolver:
    """Resolve CSV paths: relative to the root, else to the CSV's folder; absolute paths from
    another machine are remapped by finding the longest suffix that exists under the root."""

    def __init__(self, root: Path, csv_dir: Path) -> None:
        self.root = root
        self.csv_dir = csv_dir
        self.strip: int | None = None  # leading components to drop from foreign absolute paths

    def __call__(self, text: str) -> Path:
        p = Path(text.strip()).expanduser()
        if not p.is_absolute():
            first = self.root / p
            return first if first.exists() or not (self.csv_dir / p).exists() else self.csv_dir / p
        if p.exists():
            return p
        if self.strip is None:
            parts = p.parts[1:]
            for k in range(len(parts)):
                if (self.root.joinpath(*parts[k:])).exists():
                    self.strip = k
                    break
            else:
                return p
        return self.root.joinpath(*p.parts[1 + self.strip :])
