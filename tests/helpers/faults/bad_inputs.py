"""Bad inputs: every kind of broken file, manifest, config or checkpoint a user can hand sepkit.

Each *kind* gets a fresh broken copy of its input (the shared corpus is never touched), then the
real ``sepkit`` command runs on it in a subprocess, exactly as a user would type it. A kind passes
when the command

* exits with status 2 and prints one ``sepkit: error: ...`` message that names the culprit (the
  file, the manifest column or ID, the config key, the checkpoint) - the user can act on it;
* does not crash: no Python traceback, no signal death, no hang, and above all no exit status 0
  (a bad input accepted silently is the worst outcome: hours of training on garbage);
* loses nothing: every file that existed before (the corpus copy, the run directory, the
  checkpoint, earlier separated outputs) still exists afterwards with the same bytes. A file moved
  aside (same bytes under another name, e.g. ``*.corrupt``) counts as kept, a log may grow, and
  the files sepkit rewrites on every start by design (the resolved ``config.yaml``, the
  checkpoint ``index.json`` derived from the checkpoint files, the run directory's ``.lock``
  holding the trainer's PID) may change but not vanish.

Two well-formed controls (a tiny training run, a separation) must succeed, so a sepkit that
refused everything could not pass. ``run_kinds`` returns the per-kind rows (for the bench table and
for failure messages); ``run`` condenses them into the category's figures.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from helpers.faults import Figure
from helpers.training import DEMO_RECIPE, train_args, train_overrides

CATEGORY = "bad inputs"
#: A bad-input run fails within seconds (checks happen before any training); a command still
#: running after this long hangs, which is a failure, not a reason to stall CI.
TIMEOUT_S = 120.0
#: Two commands at a time: each spends most of its few seconds importing torch on one core.
WORKERS = 2
ERROR_PREFIX = "sepkit: error: "
#: The overrides of the baseline run; a resume must repeat them (other than the budget).
BASELINE_STEPS = "train.max_steps=1"
#: Rewritten on every start by design: a change is no loss, a deletion is.
REWRITTEN = frozenset({"config.yaml", "index.json", ".lock"})
#: Only ever appended to: the old bytes must still begin the file.
APPENDED = frozenset({"train.log"})


# ============================================================================== records


@dataclass(frozen=True)
class Case:
    """One prepared bad input: the command to run on it and what its error must name."""

    args: list[str]  # after ``python -m``
    culprit: str  # text the error message must contain (a path, a key, an ID)
    watched: tuple[Path, ...]  # files / trees whose pre-existing content must survive
    expect_ok: bool = False  # a well-formed control: must exit 0


@dataclass(frozen=True)
class Outcome:
    """What one kind did, with the verdicts the figures count."""

    kind: str
    command: str
    culprit: str
    returncode: int | None  # None: killed after TIMEOUT_S
    error: str  # the ``sepkit: error:`` message ("" when none)
    stderr_tail: str
    crashed: str  # why it counts as a crash ("" when it does not)
    lost: tuple[str, ...]  # pre-existing files modified or deleted
    seconds: float
    control: bool = False

    @property
    def clear(self) -> bool:
        """Exit status 2 and one ``sepkit: error:`` message naming the culprit."""
        return self.returncode == 2 and bool(self.error) and _names(self.error, self.culprit)

    @property
    def ok(self) -> bool:
        if self.control:
            return self.returncode == 0 and not self.crashed and not self.lost
        return self.clear and not self.crashed and not self.lost

    def excerpt(self, strip: str = "", width: int = 120) -> str:
        """The error line that names the culprit (else the first), ``strip`` removed from paths."""
        lines = [ln.strip() for ln in self.error.splitlines()]
        if not lines:
            return ""
        text = next((ln for ln in lines if self.culprit and self.culprit in ln), lines[0])
        text = text.removeprefix(ERROR_PREFIX)
        if strip:
            text = text.replace(strip.rstrip("/") + "/", "")
        return text if len(text) <= width else text[: width - 3] + "..."

    def describe(self) -> str:
        """A multi-line account for a failure message."""
        verdicts = [
            "" if self.clear or self.control else f"no clear error naming {self.culprit!r}",
            f"crash: {self.crashed}" if self.crashed else "",
            f"lost: {', '.join(self.lost)}" if self.lost else "",
        ]
        if self.control and self.returncode != 0:
            verdicts.append("a well-formed input was refused")
        why = "; ".join(v for v in verdicts if v) or "ok"
        return (
            f"{self.kind} [{self.command}] exit {self.returncode}: {why}\n"
            f"    stderr tail: {self.stderr_tail[-1500:]!r}"
        )


def _names(message: str, culprit: str) -> bool:
    """``culprit`` occurs as itself, not as the tail of a longer dotted name or word.

    (``data.batch_size`` must not be satisfied by ``data.data.batch_size``.)
    """
    return re.search(r"(?<![\w.])" + re.escape(culprit), message) is not None


# ============================================================================== the lab


@dataclass
class Lab:
    """Scratch space of one scenario run: the pristine corpus and the baseline run to copy."""

    work: Path
    corpus: Path  # read-only source; every kind breaks its own copy
    baseline: Path | None = None  # a finished tiny run (checkpoints, config.yaml)

    def scratch(self, kind: str) -> Path:
        folder = self.work / re.sub(r"[^a-z0-9]+", "-", kind.lower()).strip("-")
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        return folder

    def corpus_copy(self, folder: Path) -> Path:
        """A private copy of the corpus (without the generator's and validator's caches)."""
        target = folder / "corpus"
        shutil.copytree(
            self.corpus, target, ignore=shutil.ignore_patterns(".utterance-cache", ".sepkit")
        )
        return target

    def run_copy(self, folder: Path) -> Path:
        """A private copy of the baseline run, with the files an earlier evaluation left."""
        assert self.baseline is not None, "kind needs the baseline run"
        target = folder / "run"
        shutil.copytree(self.baseline, target)
        # Results of an earlier evaluation: a failed command must not clobber them.
        (target / "test_results.csv").write_text("id,si_snr\nearlier,1.0\n")
        (target / "test_summary.json").write_text('{"earlier": true}\n')
        return target


# ============================================================================== breaking files


def _manifest_rows(csv_path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with csv_path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _write_manifest(
    csv_path: Path, header: list[str], rows: Iterable[dict[str, str]], encoding: str = "utf-8"
) -> None:
    with csv_path.open("w", newline="", encoding=encoding) as f:
        writer = csv.DictWriter(f, header, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _file_of(corpus: Path, split: str, column: str, index: int = 3) -> Path:
    """The file in ``column`` of the ``index``-th example of a split's manifest."""
    _, rows = _manifest_rows(corpus / f"{split}.csv")
    return corpus / rows[index][column]


def _rewrite_wav(
    path: Path,
    change: Callable[[np.ndarray], np.ndarray],
    *,
    rate: int | None = None,
    subtype: str | None = None,
) -> None:
    """Re-write a WAV with changed samples, and optionally another rate or sample format."""
    original = sf.info(str(path))
    data, _ = sf.read(path, dtype="float32")
    sf.write(path, change(data), rate or original.samplerate, subtype=subtype or original.subtype)


def _with_nan(data: np.ndarray) -> np.ndarray:
    out = data.copy()
    out[len(out) // 2 : len(out) // 2 + 10] = np.nan
    return out


def _truncate(path: Path, size: int) -> None:
    with path.open("r+b") as f:
        f.truncate(size)


def _speech_wav(lab: Lab, target: Path, change: Callable[[np.ndarray], np.ndarray]) -> Path:
    """A recording for ``separate``: a corpus mixture, changed, as a float WAV."""
    data, sr = sf.read(_file_of(lab.corpus, "test", "mix_path", 0), dtype="float32")
    sf.write(target, change(data), sr, subtype="FLOAT")
    return target


def _foreign_model_file(target: Path) -> Path:
    """A sepkit model file of another architecture (DPRNN) than the runs here (Conv-TasNet)."""
    from sepkit.models import build_model
    from sepkit.models.io import save_model

    save_model(target, build_model({"name": "dprnn", "preset": "small"}))
    return target


def _garbage(target: Path, text: bytes = b"this is not what the name says\n" * 8) -> Path:
    target.write_bytes(text)
    return target


# ============================================================================== kinds


def _train_case(
    lab: Lab,
    folder: Path,
    culprit: str,
    *overrides: str,
    corpus: Path | None = None,
    recipe: Path | None = None,
) -> Case:
    """``sepkit train`` (tiny model, one step) in ``folder`` on ``corpus`` (default: a fresh copy,
    so even a check that regressed into training could not touch the shared corpus)."""
    args = train_args(folder / "run", corpus or lab.corpus_copy(folder), BASELINE_STEPS, *overrides)
    if recipe is not None:
        args[2] = str(recipe)  # ["sepkit", "train", RECIPE, ...]
    return Case(args, culprit, (folder,))


def _data_kind(kind: str, breaker: Callable[[Path], str]) -> Callable[[Lab], Case]:
    """``sepkit train`` on a corpus copy broken by ``breaker`` (which returns the culprit)."""

    def prepare(lab: Lab) -> Case:
        folder = lab.scratch(kind)
        corpus = lab.corpus_copy(folder)
        return _train_case(lab, folder, breaker(corpus), corpus=corpus)

    return prepare


def _break_file(
    split: str, column: str, change: Callable[[Path], None], index: int = 3
) -> Callable[[Path], str]:
    def breaker(corpus: Path) -> str:
        path = _file_of(corpus, split, column, index)
        change(path)
        return str(path)

    return breaker


def _delete(path: Path) -> None:
    path.unlink()


def _empty(path: Path) -> None:
    _truncate(path, 0)


def _cut_header(path: Path) -> None:
    _truncate(path, 24)


def _cut_data(path: Path) -> None:
    _truncate(path, int(path.stat().st_size * 0.6))


def _not_audio(path: Path) -> None:
    _garbage(path)


def _nan_samples(path: Path) -> None:
    _rewrite_wav(path, _with_nan, subtype="FLOAT")


def _rate_16k(path: Path) -> None:
    _rewrite_wav(path, lambda x: x, rate=16000)


def _stereo(path: Path) -> None:
    _rewrite_wav(path, lambda x: np.stack([x, x], axis=1))


def _shorter(path: Path) -> None:
    _rewrite_wav(path, lambda x: x[:-1000])


def _silent(path: Path) -> None:
    _rewrite_wav(path, np.zeros_like)


def _drop_column(column: str) -> Callable[[Path], str]:
    def breaker(corpus: Path) -> str:
        header, rows = _manifest_rows(corpus / "train.csv")
        _write_manifest(corpus / "train.csv", [c for c in header if c != column], rows)
        return column

    return breaker


def _duplicate_id(corpus: Path) -> str:
    header, rows = _manifest_rows(corpus / "train.csv")
    rows[5]["id"] = rows[4]["id"]
    _write_manifest(corpus / "train.csv", header, rows)
    return rows[4]["id"]


def _path_outside(corpus: Path) -> str:
    header, rows = _manifest_rows(corpus / "train.csv")
    rows[1]["s1_path"] = "../elsewhere/gone-s1.wav"
    _write_manifest(corpus / "train.csv", header, rows)
    return "gone-s1.wav"


def _ragged_row(corpus: Path) -> str:
    """A row cut short (an interrupted write, a hand edit): only its id and mixture path."""
    path = corpus / "train.csv"
    lines = path.read_text().splitlines()
    victim = lines[4].split(",")
    lines[4] = ",".join(victim[:2])
    path.write_text("\n".join(lines) + "\n")
    return victim[0]


def _not_utf8(corpus: Path) -> str:
    """A manifest saved by a spreadsheet in Latin-1: an accented transcript is not UTF-8."""
    path = corpus / "train.csv"
    header, rows = _manifest_rows(path)
    column = next((c for c in header if c.startswith("text")), "id")  # a transcript if any
    rows[2][column] = "Un caf\xe9 au lait, s'il vous pla\xeet."
    _write_manifest(path, header, rows, encoding="latin-1")
    return str(path)


def _header_only(corpus: Path) -> str:
    path = corpus / "train.csv"
    path.write_text(path.read_text().splitlines()[0] + "\n")
    return str(path)


def _no_corpus(lab: Lab) -> Case:
    folder = lab.scratch("data.root does not exist")
    root = folder / "no-such-corpus"
    return _train_case(lab, folder, str(root), corpus=root)


def _config_kind(kind: str, override: str, culprit: str) -> Callable[[Lab], Case]:
    def prepare(lab: Lab) -> Case:
        return _train_case(lab, lab.scratch(kind), culprit, override)

    return prepare


def _recipe_kind(kind: str, text: str | None) -> Callable[[Lab], Case]:
    """A recipe file that is broken (``text``) or missing (``None``)."""

    def prepare(lab: Lab) -> Case:
        folder = lab.scratch(kind)
        recipe = folder / "recipe.yaml"
        if text is not None:
            recipe.write_text(text)
        return _train_case(lab, folder, str(recipe), recipe=recipe)

    return prepare


def _init_from_kind(kind: str, make: Callable[[Path], Path]) -> Callable[[Lab], Case]:
    def prepare(lab: Lab) -> Case:
        folder = lab.scratch(kind)
        init = make(folder / "init.pt")
        return _train_case(lab, folder, str(init), f"init_from={init}")

    return prepare


def _resume_foreign(lab: Lab) -> Case:
    """A run directory whose newest checkpoint holds another architecture's weights."""
    import torch

    folder = lab.scratch("resume from a checkpoint of another model")
    run = lab.run_copy(folder)
    newest = sorted((run / "checkpoints").glob("ckpt-*.pt"))[-1]
    payload = torch.load(newest, map_location="cpu", weights_only=True)
    foreign = torch.load(_foreign_model_file(folder / "dprnn.pt"), weights_only=True)
    payload.update(model_spec=foreign["model_spec"], model_state=foreign["model_state"])
    target = newest.with_name("ckpt-000000099.pt")
    torch.save(payload, target)
    corpus = Path(_run_data_root(run))
    args = [
        "sepkit", "train", str(DEMO_RECIPE), "--run-dir", str(run), "--no-test",
        *train_overrides(corpus, "train.max_steps=2"),
    ]  # fmt: skip
    return Case(args, str(target), (run, folder / "dprnn.pt"))


def _run_data_root(run: Path) -> str:
    import yaml

    return str(yaml.safe_load((run / "config.yaml").read_text())["data"]["root"])


def _evaluate_kind(
    kind: str, breaker: Callable[[Lab, Path, Path], tuple[list[str], str]]
) -> Callable[[Lab], Case]:
    """``sepkit evaluate`` on a run copy; ``breaker(lab, folder, run)`` -> (extra args, culprit)."""

    def prepare(lab: Lab) -> Case:
        folder = lab.scratch(kind)
        run = lab.run_copy(folder)
        extra, culprit = breaker(lab, folder, run)
        args = ["sepkit", "evaluate", "--run-dir", str(run), *extra]
        return Case(args, culprit, (folder,))

    return prepare


def _corrupt_checkpoint(lab: Lab, folder: Path, run: Path) -> tuple[list[str], str]:
    ckpt = _garbage(run / "checkpoints" / "ckpt-000000050.pt", os.urandom(4096))
    return ["--checkpoint", str(ckpt)], str(ckpt)


def _broken_run_config(lab: Lab, folder: Path, run: Path) -> tuple[list[str], str]:
    config = run / "config.yaml"
    config.write_text(config.read_text()[:-40] + "\n  bad: [unclosed\n")
    return [], str(config)


def _bad_test_split(lab: Lab, folder: Path, run: Path) -> tuple[list[str], str]:
    corpus = lab.corpus_copy(folder)
    culprit = _break_file("test", "s1_path", _stereo, index=2)(corpus)
    return [f"data.root={corpus}"], culprit


def _not_a_run_dir(lab: Lab) -> Case:
    folder = lab.scratch("evaluate a folder that is not a run")
    empty = folder / "not-a-run"
    empty.mkdir()
    return Case(["sepkit", "evaluate", "--run-dir", str(empty)], str(empty), (folder,))


def _separate_kind(
    kind: str,
    recording: Callable[[Lab, Path], Path],
    *options: str,
    checkpoint: Callable[[Lab, Path, Path], Path] | None = None,
    culprit: str | None = None,
) -> Callable[[Lab], Case]:
    """``sepkit separate`` of ``recording`` with the baseline's model (or ``checkpoint``) into an
    output folder holding earlier results under the names this input would produce."""

    def prepare(lab: Lab) -> Case:
        folder = lab.scratch(kind)
        run = lab.run_copy(folder)
        wav = recording(lab, folder)
        out = folder / "separated"
        out.mkdir()
        control = kind.startswith("control")
        for k in (1, 2) if not control else ():  # an earlier separation of a same-named file
            earlier = _file_of(lab.corpus, "test", f"s{k}_path", 1)
            shutil.copyfile(earlier, out / f"{wav.stem}_s{k}.wav")
        model = ["--run-dir", str(run)]
        if checkpoint is not None:
            model = ["--checkpoint", str(checkpoint(lab, folder, run))]
        args = ["sepkit", "separate", *model, str(wav), "--out", str(out), *options]
        named = culprit or (model[1] if checkpoint is not None else str(wav))
        return Case(args, named, (folder,), expect_ok=control)

    return prepare


def _good_recording(lab: Lab, folder: Path) -> Path:
    return _speech_wav(lab, folder / "talk.wav", lambda x: x)


def _nan_recording(lab: Lab, folder: Path) -> Path:
    return _speech_wav(lab, folder / "talk.wav", _with_nan)


def _garbage_recording(lab: Lab, folder: Path) -> Path:
    return _garbage(folder / "talk.wav")


def _missing_recording(lab: Lab, folder: Path) -> Path:
    return folder / "no-such-talk.wav"


def _empty_recording(lab: Lab, folder: Path) -> Path:
    return _speech_wav(lab, folder / "talk.wav", lambda x: x[:0])


def _truncated_checkpoint(lab: Lab, folder: Path, run: Path) -> Path:
    best = run / "checkpoints" / "best.pt"
    target = folder / "copied-half.pt"
    target.write_bytes(best.read_bytes()[: best.stat().st_size // 2])
    return target


def _separate_empty_run(lab: Lab) -> Case:
    """``separate --run-dir`` on a run that has not written a checkpoint yet."""
    folder = lab.scratch("separate with a run that has no checkpoint")
    run = folder / "run"
    (run / "checkpoints").mkdir(parents=True)
    wav = _good_recording(lab, folder)
    args = ["sepkit", "separate", "--run-dir", str(run), str(wav), "--out", str(folder / "out")]
    return Case(args, str(run), (folder,))


def _baseline_case(lab: Lab) -> Case:
    """Control: a tiny training run on the intact corpus; the run other kinds copy and break."""
    folder = lab.work / "baseline"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    corpus = lab.corpus_copy(folder)
    return Case(train_args(folder / "run", corpus, BASELINE_STEPS), "", (corpus,), expect_ok=True)


YAML_ERROR = "data:\n  root: [unclosed\ntrain:\n  epochs: 1\n"


@dataclass(frozen=True)
class Kind:
    name: str
    command: str  # for the table
    prepare: Callable[[Lab], Case]
    quick: bool = True  # part of the reduced (CI) form
    needs_baseline: bool = False


# fmt: off
KINDS: tuple[Kind, ...] = (
    # --- audio files of the corpus (sepkit train validates every file before training) ---
    Kind("empty WAV (0 bytes)", "train", _data_kind(
        "empty WAV", _break_file("train", "s1_path", _empty))),
    Kind("WAV cut inside its header", "train", _data_kind(
        "WAV cut inside its header", _break_file("train", "mix_path", _cut_header)), quick=False),
    Kind("truncated WAV (data cut short)", "train", _data_kind(
        "truncated WAV", _break_file("train", "mix_path", _cut_data))),
    Kind("broken WAV (text named .wav)", "train", _data_kind(
        "broken WAV", _break_file("train", "s2_path", _not_audio))),
    Kind("NaN samples", "train", _data_kind(
        "NaN samples", _break_file("train", "s1_path", _nan_samples))),
    Kind("wrong sample rate", "train", _data_kind(
        "wrong sample rate", _break_file("train", "mix_path", _rate_16k))),
    Kind("stereo where mono is expected", "train", _data_kind(
        "stereo", _break_file("train", "s2_path", _stereo))),
    Kind("mix/source length mismatch", "train", _data_kind(
        "length mismatch", _break_file("train", "s2_path", _shorter))),
    Kind("silent source", "train", _data_kind(
        "silent source", _break_file("train", "s1_path", _silent))),
    Kind("missing file (valid split)", "train", _data_kind(
        "missing file", _break_file("valid", "s2_path", _delete, index=2))),
    # --- manifests ---
    Kind("manifest: missing source column", "train", _data_kind(
        "missing column", _drop_column("s2_path"))),
    Kind("manifest: missing mix column", "train", _data_kind(
        "missing mix column", _drop_column("mix_path")), quick=False),
    Kind("manifest: duplicate IDs", "train", _data_kind("duplicate IDs", _duplicate_id)),
    Kind("manifest: path outside the corpus", "train", _data_kind(
        "path outside", _path_outside), quick=False),
    Kind("manifest: row cut short", "train", _data_kind("ragged row", _ragged_row)),
    Kind("manifest: not UTF-8", "train", _data_kind("not utf-8", _not_utf8), quick=False),
    Kind("manifest: no examples", "train", _data_kind(
        "header only", _header_only), quick=False),
    Kind("data.root does not exist", "train", _no_corpus, quick=False),
    Kind("data.num_spks=3 on a 2-speaker corpus", "train", _config_kind(
        "num_spks mismatch", "data.num_spks=3", "data.num_spks"), quick=False),
    # --- configuration ---
    Kind("unknown config key", "train", _config_kind(
        "unknown key", "train.treshold=-20", "train.treshold")),
    Kind("wrong type in config", "train", _config_kind(
        "wrong type", "data.batch_size=two", "data.batch_size")),
    Kind("invalid value: batch_size=0", "train", _config_kind(
        "batch size 0", "data.batch_size=0", "data.batch_size")),
    Kind("invalid value: eval_batch_size=0", "train", _config_kind(
        "eval batch size 0", "data.eval_batch_size=0", "data.eval_batch_size"), quick=False),
    Kind("invalid value: grad_accumulation=0", "train", _config_kind(
        "grad accumulation 0", "train.grad_accumulation=0", "train.grad_accumulation"),
        quick=False),
    Kind("unknown model name", "train", _config_kind(
        "unknown model", "model.name=convtasnett", "model.name"), quick=False),
    Kind("YAML syntax error in recipe", "train", _recipe_kind("yaml error", YAML_ERROR)),
    Kind("recipe file missing", "train", _recipe_kind("recipe missing", None), quick=False),
    # --- checkpoints ---
    Kind("init_from: corrupt file", "train init_from=", _init_from_kind(
        "init_from corrupt", lambda p: _garbage(p, os.urandom(4096)))),
    Kind("init_from: checkpoint of another model", "train init_from=", _init_from_kind(
        "init_from another model", _foreign_model_file)),
    Kind("resume: checkpoint of another model", "train (resume)", _resume_foreign,
         needs_baseline=True, quick=False),
    Kind("corrupt checkpoint", "evaluate --checkpoint", _evaluate_kind(
        "corrupt checkpoint", _corrupt_checkpoint), needs_baseline=True),
    Kind("run dir: config.yaml broken", "evaluate", _evaluate_kind(
        "broken run config", _broken_run_config), needs_baseline=True, quick=False),
    Kind("run dir: not a sepkit run", "evaluate", _not_a_run_dir, quick=False),
    Kind("test split: stereo source", "evaluate", _evaluate_kind(
        "bad test file", _bad_test_split), needs_baseline=True, quick=False),
    Kind("truncated checkpoint", "separate --checkpoint", _separate_kind(
        "truncated checkpoint", _good_recording, checkpoint=_truncated_checkpoint),
        needs_baseline=True),
    Kind("separate: unreadable file", "separate", _separate_kind(
        "separate unreadable", _garbage_recording), needs_baseline=True),
    Kind("separate: NaN samples", "separate", _separate_kind(
        "separate nan", _nan_recording), needs_baseline=True),
    Kind("separate: NaN samples, whole file at once", "separate --chunk-seconds 0",
         _separate_kind("separate nan unchunked", _nan_recording, "--chunk-seconds", "0"),
         needs_baseline=True, quick=False),
    Kind("separate: missing file", "separate", _separate_kind(
        "separate missing", _missing_recording), needs_baseline=True, quick=False),
    Kind("separate: WAV without samples", "separate", _separate_kind(
        "separate empty", _empty_recording), needs_baseline=True, quick=False),
    Kind("separate: overlap longer than half a chunk", "separate --overlap-seconds 5",
         _separate_kind("separate overlap", _good_recording, "--overlap-seconds", "5",
                        culprit="--overlap-seconds"), needs_baseline=True, quick=False),
    Kind("separate: run without checkpoint", "separate --run-dir", _separate_empty_run,
         quick=False),
)
CONTROLS: tuple[Kind, ...] = (
    Kind("control: separate a good file", "separate", _separate_kind(
        "control: separate", _good_recording), needs_baseline=True),
)
# fmt: on


# ============================================================================== running


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def snapshot(paths: Iterable[Path]) -> dict[Path, tuple[int, str]]:
    """(size, sha256) of every file under ``paths`` (files or folders)."""
    facts: dict[Path, tuple[int, str]] = {}
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            data = path.read_bytes()
            facts[path] = (len(data), _digest(data))
    return facts


def lost_files(
    before: dict[Path, tuple[int, str]], after: dict[Path, tuple[int, str]]
) -> list[str]:
    """Pre-existing files whose content is gone (see the module docstring for what is kept)."""
    moved_to = {digest for _, digest in after.values()}
    return [str(path) for path, old in before.items() if not _kept(path, old, after, moved_to)]


def _kept(
    path: Path, old: tuple[int, str], after: dict[Path, tuple[int, str]], moved_to: set[str]
) -> bool:
    if after.get(path) == old or old[1] in moved_to:
        return True
    if path not in after:
        return False
    if path.name in REWRITTEN:
        return True
    if path.name in APPENDED:
        return _digest(path.read_bytes()[: old[0]]) == old[1]
    return False


def run_command(args: Sequence[str], cwd: Path) -> tuple[int | None, str, float]:
    """``python -m <args>`` in its own session; (exit status or None on timeout, stderr, s)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, stderr = proc.communicate(timeout=TIMEOUT_S)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, stderr = proc.communicate()
        code = None
    return code, stderr, time.perf_counter() - start


def crash_reason(code: int | None, stderr: str, expect_ok: bool) -> str:
    """Why a run counts as a crash ("" when it does not)."""
    if code is None:
        return f"hung (killed after {TIMEOUT_S:.0f} s)"
    if "Traceback (most recent call last)" in stderr:
        return "Python traceback"
    if code < 0:
        return f"killed by signal {signal.Signals(-code).name}"
    if code == 0 and not expect_ok:
        return "exit 0: the bad input was accepted"
    return ""


def error_message(stderr: str) -> str:
    """The ``sepkit: error:`` message and its continuation lines; "" unless there is exactly one."""
    lines = stderr.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(ERROR_PREFIX)]
    if len(starts) != 1:
        return ""
    return "\n".join(lines[starts[0] :])


def attempt(lab: Lab, kind: Kind) -> Outcome:
    """Prepare one kind, run its command, and judge what happened."""
    case = kind.prepare(lab)
    before = snapshot(case.watched)
    code, stderr, seconds = run_command(case.args, lab.work)
    after = snapshot(case.watched)
    return Outcome(
        kind=kind.name,
        command=kind.command,
        culprit=case.culprit,
        returncode=code,
        error=error_message(stderr),
        stderr_tail=stderr[-3000:],
        crashed=crash_reason(code, stderr, case.expect_ok),
        lost=tuple(lost_files(before, after)),
        seconds=seconds,
        control=case.expect_ok,
    )


def _baseline(lab: Lab) -> Outcome:
    case = _baseline_case(lab)
    before = snapshot(case.watched)
    code, stderr, seconds = run_command(case.args, lab.work)
    lab.baseline = lab.work / "baseline" / "run"
    return Outcome(
        kind="control: tiny training run",
        command="train",
        culprit="",
        returncode=code,
        error=error_message(stderr),
        stderr_tail=stderr[-3000:],
        crashed=crash_reason(code, stderr, True),
        lost=tuple(lost_files(before, snapshot(case.watched))),
        seconds=seconds,
        control=True,
    )


def run_kinds(work: Path, corpus: Path, *, full: bool) -> list[Outcome]:
    """Every kind (``full``) or the reduced set, plus the controls; kinds run two at a time."""
    lab = Lab(work=Path(work), corpus=Path(corpus))
    chosen = [k for k in KINDS if full or k.quick]
    first = [k for k in chosen if not k.needs_baseline]
    later = [k for k in (*chosen, *CONTROLS) if k.needs_baseline]
    with ThreadPoolExecutor(WORKERS) as pool:
        base = pool.submit(_baseline, lab)
        futures: list[Future[Outcome]] = [pool.submit(attempt, lab, k) for k in first]
        baseline = base.result()
        if baseline.ok:
            futures += [pool.submit(attempt, lab, k) for k in later]
        outcomes = [baseline, *(f.result() for f in futures)]
    return outcomes


def figures(outcomes: Sequence[Outcome]) -> list[Figure]:
    """The category's figures; a failing figure lists the kinds that fail it."""
    kinds = [o for o in outcomes if not o.control]
    controls = [o for o in outcomes if o.control]
    unclear = [o.kind for o in kinds if not o.clear]
    crashed = [o.kind for o in kinds if o.crashed]
    lost = [o.kind for o in outcomes if o.lost]
    refused = [o.kind for o in controls if not o.ok]

    def which(names: list[str]) -> str:
        return f" ({'; '.join(names)})" if names else ""

    n = len(kinds)
    return [
        Figure(CATEGORY, "kinds of bad input tried", str(n), ">= 15", n >= 15),
        Figure(
            CATEGORY,
            "clear errors naming the culprit",
            f"{n - len(unclear)} / {n}{which(unclear)}",
            "equal",
            not unclear and n > 0,
        ),
        Figure(CATEGORY, "crashes", f"{len(crashed)}{which(crashed)}", "0", not crashed),
        Figure(
            CATEGORY,
            "files lost or modified",
            f"{'none' if not lost else len(lost)}{which(lost)}",
            "none",
            not lost,
        ),
        Figure(
            CATEGORY,
            "well-formed controls accepted",
            f"{len(controls) - len(refused)} / {len(controls)}{which(refused)}",
            "equal",
            not refused and len(controls) == 1 + len(CONTROLS),
        ),
    ]


def table(outcomes: Sequence[Outcome], work: Path | None = None) -> list[list[str]]:
    """Rows ``kind, command, exit status, error excerpt`` (paths relative to ``work``)."""
    strip = str(work) if work is not None else ""
    return [
        [o.kind, o.command, str(o.returncode), o.excerpt(strip) or o.crashed or "-"]
        for o in outcomes
    ]


def run(work: Path, corpus: Path, *, full: bool) -> list[Figure]:
    return figures(run_kinds(work, corpus, full=full))


DETAIL_HEADER = ["kind", "command", "exit", "error message (excerpt)"]


def run_with_details(
    work: Path, corpus: Path, *, full: bool
) -> tuple[list[Figure], list[str], list[list[str]]]:
    """The figures plus one row per kind, for the table of docs/reliability.md."""
    outcomes = run_kinds(work, corpus, full=full)
    return figures(outcomes), DETAIL_HEADER, table(outcomes, work)
