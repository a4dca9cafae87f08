"""The ``sepkit`` command. Thin on purpose: parse, build from config, call the library.

Every user-facing failure (bad config key, bad data file, corrupt checkpoint...) is printed as one
``sepkit: error: ...`` message naming the culprit, with exit status 2, instead of a traceback.
A disk or OS error exits 3; a training run stopped by ``train.nonfinite_patience`` (every recent
batch skipped) exits 4, after writing a checkpoint.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn

from sepkit import __version__
from sepkit.utils.launch import exit_process

EXAMPLES = """examples:
  sepkit demo --out runs/demo --minutes 15
  sepkit prepare /data/LibriSpeech/train-clean-100 --out data/libri2mix-dm
  sepkit prepare-demo --out data/demo2mix
  sepkit train recipes/demo.yaml --run-dir runs/exp1 data.root=data/demo2mix train.max_minutes=30
  sepkit evaluate --run-dir runs/exp1 --save-audio --n-audio-to-save 10
  sepkit separate --run-dir runs/exp1 meeting.wav --out separated/
  sepkit stream --run-dir runs/causal live.wav --out separated/ --block-size 64
  sepkit export --run-dir runs/exp1 --format onnx --out model.onnx
  torchrun --nproc-per-node 2 -m sepkit train recipes/demo.yaml --run-dir runs/ddp
"""


@dataclass(frozen=True)
class Subcommand:
    """A subcommand: its one-line help, and its module under ``sepkit/cli/`` (``add_arguments``,
    ``run``), imported only when that subcommand is run, so ``sepkit --help`` loads neither torch
    nor any model."""

    name: str
    help: str
    module: str


SUBCOMMANDS = (
    Subcommand(
        "demo",
        "make the built-in corpus, train, evaluate and write a report, in one command",
        "sepkit.cli.demo",
    ),
    Subcommand(
        "prepare",
        "make a corpus from single-speaker recordings (LibriSpeech, VCTK, a folder per speaker "
        "or a path,speaker CSV): speaker-disjoint splits, fixed valid/test mixtures",
        "sepkit.cli.prepare",
    ),
    Subcommand(
        "prepare-demo",
        "generate the built-in multi-speaker corpus (eSpeak NG speech, wsj0-2mix layout)",
        "sepkit.cli.prepare_demo",
    ),
    Subcommand(
        "train",
        "train a model from a YAML recipe (resumes when the run dir has checkpoints)",
        "sepkit.cli.train",
    ),
    Subcommand(
        "evaluate",
        "score the best checkpoint of a run on its test split (SI-SNRi, SDRi, ...)",
        "sepkit.cli.evaluate",
    ),
    Subcommand(
        "separate",
        "separate audio files with a trained model (chunked, any length)",
        "sepkit.cli.separate",
    ),
    Subcommand(
        "stream",
        "separate a file block by block as if it were live, with a causal model (low latency)",
        "sepkit.cli.stream",
    ),
    Subcommand(
        "export",
        "export a trained model to ONNX (whole-signal, or a stateful stream for causal models)",
        "sepkit.cli.export",
    ),
    Subcommand(
        "report",
        "write RUN_DIR/report.html: plots, metrics and audio players",
        "sepkit.cli.report",
    ),
    Subcommand(
        "import-speechbrain",
        "convert a SpeechBrain SepFormer model folder into a sepkit model file",
        "sepkit.cli.import_speechbrain",
    ),
)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``sepkit`` parser; ``command``: the subcommand to give its full arguments (the
    others get their help line only, so that their modules are not imported)."""
    parser = argparse.ArgumentParser(
        prog="sepkit",
        description="Train and run speech-separation models (SepFormer, Conv-TasNet, DPRNN) with "
        "a training loop that survives NaNs, crashes and bad data.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sepkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for entry in SUBCOMMANDS:
        p = sub.add_parser(entry.name, help=entry.help, description=entry.help)
        if entry.name == command:
            module = importlib.import_module(entry.module)
            module.add_arguments(p)
            runner: Callable[[argparse.Namespace], int] = module.run
            p.set_defaults(func=runner)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (its first word that is one), if any."""
    names = {entry.name for entry in SUBCOMMANDS}
    return next((word for word in argv if word in names), None)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "your input is wrong", shown without a traceback."""
    from sepkit.config import ConfigError
    from sepkit.export.onnx import ExportError
    from sepkit.inference import InputError
    from sepkit.models.io import ModelFileError
    from sepkit.models.streaming import NotStreamableError
    from sepkit.training.checkpoint import CheckpointError

    errors: list[type[BaseException]] = [
        ConfigError,
        ModelFileError,
        CheckpointError,
        InputError,
        NotStreamableError,
        ExportError,
    ]
    try:
        from sepkit.data.dataset import DataError

        errors.append(DataError)
    except ImportError:
        pass
    errors.extend([FileNotFoundError, PermissionError])
    return tuple(errors)


def _stalled_error() -> type[BaseException]:
    from sepkit.training.patience import TrainingStalledError

    return TrainingStalledError


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_in(argv))
    # argparse stops filling a trailing positional once an option follows it, so overrides
    # written after --run-dir arrive as "unknown" arguments: take them back here.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args) or 0)
    except _user_errors() as err:
        print(f"sepkit: error: {err}", file=sys.stderr)
        return 2
    except _stalled_error() as err:
        print(f"sepkit: error: {err}", file=sys.stderr)
        return 4
    except OSError as err:  # disk full, read-only file system...
        where = f"{err.filename}: " if err.filename else ""
        print(f"sepkit: error: {where}{err.strerror or err}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("sepkit: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


def entry() -> NoReturn:
    """The ``sepkit`` program and ``python -m sepkit``: :func:`main`, then exit with its code
    (through :func:`sepkit.utils.launch.exit_process`, which skips finalisation in torchrun
    workers)."""
    exit_process(main())


if __name__ == "__main__":
    entry()
