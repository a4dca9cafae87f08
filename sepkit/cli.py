"""The ``sepkit`` command. Thin on purpose: parse, build from config, call the library.

Every user-facing failure (bad config key, bad data file, corrupt checkpoint...) is printed as one
``sepkit: error: ...`` message naming the culprit, with exit status 2, instead of a traceback.
A disk or OS error exits 3; a training run stopped by ``train.nonfinite_patience`` (every recent
batch skipped) exits 4, after writing a checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
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
  torchrun --nproc-per-node 2 -m sepkit train recipes/demo.yaml --run-dir runs/ddp
"""


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model from a YAML recipe (resumes when the run dir has checkpoints)",
        description="Train from RECIPE with dotted key=value overrides, e.g. train.threshold=-20 "
        "data.batch_size=2 model.num_spks=3. An unknown key or a wrong type is an error naming "
        "the key. Re-running the same command resumes from the newest checkpoint.",
    )
    p.add_argument("recipe", type=Path, help="YAML recipe (see recipes/)")
    p.add_argument("--run-dir", type=Path, required=True, help="where everything is written")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.add_argument("--no-test", action="store_true", help="skip the test pass after training")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from sepkit.recipe import load_recipe
    from sepkit.run import train

    cfg = load_recipe(args.recipe, args.overrides)
    summary = train(cfg, args.run_dir, test_after=not args.no_test)
    _print_test_summary(summary.get("test"))
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score the best checkpoint of a run on its test split (SI-SNRi, SDRi, ...)",
        description="One pass over the split: per-utterance SI-SNR(i) and SDR(i) (and PESQ/STOI "
        "when installed) into RUN_DIR/test_results.csv and test_summary.json.",
    )
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--split", default="test", choices=["test", "valid", "train"])
    p.add_argument("--checkpoint", type=Path, help="a specific checkpoint (default: best.pt)")
    p.add_argument(
        "--save-audio", action="store_true", help="write separated WAVs to RUN_DIR/audio"
    )
    p.add_argument(
        "--n-audio-to-save", type=int, default=None, help="at most N examples (default all)"
    )
    p.add_argument(
        "--metrics",
        default=None,
        help="comma-separated subset of si_snr,sdr,pesq,stoi (default: si_snr,sdr)",
    )
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. data.root=/corpus")
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from sepkit.config import apply_overrides, build_dataclass, to_dict
    from sepkit.run import evaluate, load_run_config, setup_logging

    cfg = load_run_config(args.run_dir)  # first: a mistyped --run-dir must not be created
    setup_logging(args.run_dir)
    if args.overrides:
        from sepkit.recipe import RunConfig

        cfg = build_dataclass(RunConfig, apply_overrides(to_dict(cfg), args.overrides))
    metrics = tuple(m.strip() for m in args.metrics.split(",")) if args.metrics else None
    summary = evaluate(
        args.run_dir,
        cfg=cfg,
        split=args.split,
        checkpoint=args.checkpoint,
        save_audio=True if args.save_audio else None,
        n_audio_to_save=args.n_audio_to_save,
        metrics=metrics,
    )
    _print_test_summary(summary)
    return 0


def _print_test_summary(summary: dict | None) -> None:
    if not summary or "metrics" not in summary:
        return
    parts = []
    for name, stats in summary["metrics"].items():
        if isinstance(stats, dict) and "mean" in stats:
            parts.append(f"{name} {stats['mean']:.2f}")
    print(f"test ({summary.get('num_utterances', '?')} utterances): " + ", ".join(parts))


def _add_delegated(
    sub: argparse._SubParsersAction,
    name: str,
    help_text: str,
    module: str,
    add: str,
    run: str,
) -> None:
    """Subcommands whose arguments live next to their implementation."""
    import importlib

    mod = importlib.import_module(module)
    p = sub.add_parser(name, help=help_text, description=help_text)
    getattr(mod, add)(p)
    runner: Callable[[argparse.Namespace], int] = getattr(mod, run)
    p.set_defaults(func=runner)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sepkit",
        description="Train and run speech-separation models (SepFormer, Conv-TasNet, DPRNN) with "
        "a training loop that survives NaNs, crashes and bad data.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sepkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_delegated(
        sub,
        "demo",
        "make the built-in corpus, train, evaluate and write a report, in one command",
        "sepkit.demo",
        "add_demo_arguments",
        "run_demo",
    )
    _add_delegated(
        sub,
        "prepare",
        "make a corpus from single-speaker recordings (LibriSpeech, VCTK, a folder per speaker "
        "or a path,speaker CSV): speaker-disjoint splits, fixed valid/test mixtures",
        "sepkit.data.prepare",
        "add_prepare_arguments",
        "run_prepare",
    )
    _add_delegated(
        sub,
        "prepare-demo",
        "generate the built-in multi-speaker corpus (eSpeak NG speech, wsj0-2mix layout)",
        "sepkit.data.generate",
        "add_prepare_demo_arguments",
        "run_prepare_demo",
    )
    _add_train(sub)
    _add_evaluate(sub)
    _add_delegated(
        sub,
        "separate",
        "separate audio files with a trained model (chunked, any length)",
        "sepkit.inference",
        "add_separate_arguments",
        "run_separate",
    )
    _add_delegated(
        sub,
        "report",
        "write RUN_DIR/report.html: plots, metrics and audio players",
        "sepkit.report",
        "add_report_arguments",
        "run_report",
    )
    _add_delegated(
        sub,
        "import-speechbrain",
        "convert a SpeechBrain SepFormer model folder into a sepkit model file",
        "sepkit.models.sepformer",
        "add_import_arguments",
        "run_import",
    )
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "your input is wrong", shown without a traceback."""
    from sepkit.config import ConfigError
    from sepkit.inference import InputError
    from sepkit.models.io import ModelFileError
    from sepkit.training.checkpoint import CheckpointError

    errors: list[type[BaseException]] = [ConfigError, ModelFileError, CheckpointError, InputError]
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
    parser = build_parser()
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
