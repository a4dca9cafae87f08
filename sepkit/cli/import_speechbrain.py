"""``sepkit import-speechbrain``: convert a SpeechBrain SepFormer folder into a sepkit model file (its arguments and its run)."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``sepkit import-speechbrain MODEL_DIR --out FILE``."""
    parser.add_argument(
        "model_dir",
        metavar="MODEL_DIR",
        help="SpeechBrain model-card folder: hyperparams.yaml, encoder.ckpt, masknet.ckpt, "
        "decoder.ckpt",
    )
    parser.add_argument("--out", required=True, metavar="FILE", help="sepkit model file to write")


def run(args: argparse.Namespace) -> int:
    """``sepkit import-speechbrain``: 0 on success, 1 with a message naming the problem."""
    from sepkit.models.contract import spec_of
    from sepkit.models.speechbrain import SpeechBrainImportError, import_speechbrain

    try:
        model = import_speechbrain(args.model_dir, args.out)
    except SpeechBrainImportError as err:
        print(f"import-speechbrain: {err}", file=sys.stderr)
        return 1
    spec = spec_of(model) or {}
    params = sum(p.numel() for p in model.parameters())
    print(
        f"wrote {args.out}: sepformer, {spec.get('num_spks')} sources, {params / 1e6:.2f} M "
        f"parameters; use it with `sepkit separate --checkpoint {args.out}` or as init_from"
    )
    return 0
