"""Read SpeechBrain SepFormer model cards without SpeechBrain.

A model card folder holds ``hyperparams.yaml`` (HyperPyYAML: ``!new:dotted.Class`` builds an
object from its arguments, ``!ref <key>`` points at another entry) and one state dict per module
(``encoder.ckpt``, ``masknet.ckpt``, ``decoder.ckpt``). We parse the YAML with a PyYAML loader
that records those tags instead of executing anything (a model card is data, and importing
SpeechBrain would pull in torchaudio and much more), read the constructor arguments of
``dual_path.Encoder``, ``Dual_Path_Model``, ``SBTransformerBlock`` and ``Decoder`` (with
SpeechBrain's defaults for missing ones), build the equivalent :class:`SepFormerConfig`, and
rename the state-dict keys onto sepkit's modules.
"""

from __future__ import annotations

import argparse
import ast
import operator
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor, nn

from sepkit.models.contract import spec_of
from sepkit.models.io import save_model
from sepkit.models.registry import build_model

DUAL_PATH = "speechbrain.lobes.models.dual_path."


class SpeechBrainImportError(ValueError):
    """A SpeechBrain folder cannot be read as a SepFormer; the message names file and key."""


# --------------------------------------------------------------------------- HyperPyYAML subset


@dataclass
class New:
    """``!new:dotted.Class`` with its (unresolved, then resolved) arguments."""

    target: str
    args: list[Any]
    kwargs: dict[str, Any]


@dataclass
class Ref:
    """``!ref <key>`` (or a string with several ``<key>`` parts, or simple arithmetic)."""

    text: str


@dataclass
class Opaque:
    """Any other tag (``!name:``, ``!apply:``, ``!PLACEHOLDER``...): kept, never executed."""

    tag: str
    value: Any


class _HyperLoader(yaml.SafeLoader):
    """SafeLoader that records HyperPyYAML tags as :class:`New`/:class:`Ref`/:class:`Opaque`."""


def _construct_tagged(loader: _HyperLoader, suffix: str, node: yaml.Node) -> Any:
    tag = "!" + suffix
    value: Any
    if isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_scalar(node)  # type: ignore[arg-type]
    if tag == "!ref" or tag == "!copy":
        return Ref(str(value))
    if tag.startswith("!new:"):
        if isinstance(value, dict):
            return New(tag[5:], [], value)
        if isinstance(value, list):
            return New(tag[5:], value, {})
        return New(tag[5:], [] if value in ("", None) else [value], {})
    return Opaque(tag, value)


_HyperLoader.add_multi_constructor("!", _construct_tagged)

_REF = re.compile(r"<([^<>]+)>")
_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
#: ``**`` only within these bounds: ``9**9**9**9`` in a downloaded hyperparams.yaml must not
#: hang the import computing a number with hundreds of millions of digits.
MAX_EXPONENT, MAX_BASE = 64, 1e6


def _arith(text: str) -> Any:
    """Evaluate ``2 * 128 // 4``-style arithmetic (all HyperPyYAML allows in ``!ref``)."""

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and (abs(right) > MAX_EXPONENT or abs(left) > MAX_BASE):
                raise ValueError(f"{text}: {left} ** {right} is too large to evaluate")
            return _BINOPS[type(node.op)](left, right)
        raise ValueError(text)

    return ev(ast.parse(text, mode="eval"))


class _Resolver:
    """Resolves ``!ref`` against the whole document (recursively, detecting cycles)."""

    def __init__(self, root: dict[str, Any], source: Path) -> None:
        self.root = root
        self.source = source
        self.active: set[str] = set()

    def lookup(self, key: str) -> Any:
        node: Any = self.root
        for part in re.split(r"[.\[\]]+", key.strip()):
            if not part:
                continue
            if isinstance(node, New):
                node = node.kwargs
            if not isinstance(node, Mapping) or part not in node:
                raise SpeechBrainImportError(f"{self.source}: !ref <{key}> names no entry")
            node = node[part]
        if key in self.active:
            raise SpeechBrainImportError(f"{self.source}: !ref <{key}> refers to itself")
        self.active.add(key)
        try:
            return self.resolve(node)
        finally:
            self.active.discard(key)

    def resolve(self, node: Any) -> Any:
        if isinstance(node, Ref):
            whole = _REF.fullmatch(node.text.strip())
            if whole:
                return self.lookup(whole.group(1))
            text = _REF.sub(lambda m: str(self.lookup(m.group(1))), node.text)
            try:
                return _arith(text)
            except (ValueError, SyntaxError, ZeroDivisionError):
                return text
        if isinstance(node, New):
            # Resolved in place: two references to one object stay one object, as in SpeechBrain.
            node.args = [self.resolve(v) for v in node.args]
            node.kwargs = {k: self.resolve(v) for k, v in node.kwargs.items()}
            return node
        if isinstance(node, dict):
            return {k: self.resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [self.resolve(v) for v in node]
        return node


def load_hyperpyyaml(path: str | Path) -> dict[str, Any]:
    """Parse a HyperPyYAML file into plain data with :class:`New`/:class:`Opaque` leaves."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(), Loader=_HyperLoader)  # a SafeLoader subclass
    except OSError as err:
        raise SpeechBrainImportError(f"{path}: cannot be read ({err})") from err
    except yaml.YAMLError as err:
        raise SpeechBrainImportError(f"{path}: not valid (Hyper)YAML: {err}") from err
    if not isinstance(raw, dict):
        raise SpeechBrainImportError(f"{path}: top level must be a mapping")
    resolved: dict[str, Any] = _Resolver(raw, path).resolve(raw)
    return resolved


# --------------------------------------------------------------------------- hyperparams -> config

# Constructor signatures (positional order and defaults) of the SpeechBrain classes we read.
_SIGNATURES: dict[str, list[tuple[str, Any]]] = {
    "Encoder": [("kernel_size", 2), ("out_channels", 64), ("in_channels", 1)],
    "Decoder": [
        ("in_channels", None),
        ("out_channels", None),
        ("kernel_size", None),
        ("stride", 1),
        ("padding", 0),
        ("output_padding", 0),
        ("groups", 1),
        ("bias", True),
        ("dilation", 1),
    ],
    "Dual_Path_Model": [
        ("in_channels", None),
        ("out_channels", None),
        ("intra_model", None),
        ("inter_model", None),
        ("num_layers", 1),
        ("norm", "ln"),
        ("K", 200),
        ("num_spks", 2),
        ("skip_around_intra", True),
        ("linear_layer_after_inter_intra", True),
        ("use_global_pos_enc", False),
        ("max_length", 20000),
    ],
    "SBTransformerBlock": [
        ("num_layers", None),
        ("d_model", None),
        ("nhead", None),
        ("d_ffn", 2048),
        ("input_shape", None),
        ("kdim", None),
        ("vdim", None),
        ("dropout", 0.1),
        ("activation", "relu"),
        ("use_positional_encoding", False),
        ("norm_before", False),
        ("attention_type", "regularMHA"),
    ],
}


def _arguments(obj: Any, cls: str, where: str) -> dict[str, Any]:
    """The arguments of ``!new:...dual_path.<cls>``, SpeechBrain's defaults filled in."""
    if not isinstance(obj, New) or obj.target != DUAL_PATH + cls:
        found = obj.target if isinstance(obj, New) else type(obj).__name__
        raise SpeechBrainImportError(
            f"{where}: expected !new:{DUAL_PATH}{cls}, found {found}; only SpeechBrain SepFormer "
            "models (dual_path Encoder, Dual_Path_Model of SBTransformerBlocks, Decoder) import"
        )
    signature = _SIGNATURES[cls]
    if len(obj.args) > len(signature):
        raise SpeechBrainImportError(f"{where}: too many positional arguments for {cls}")
    values = {name: default for name, default in signature}
    values.update({name: arg for (name, _), arg in zip(signature, obj.args, strict=False)})
    unknown = set(obj.kwargs) - set(values)
    if unknown:
        raise SpeechBrainImportError(f"{where}: unsupported {cls} arguments {sorted(unknown)}")
    values.update(obj.kwargs)
    missing = [name for name, value in values.items() if value is None and name in _REQUIRED]
    if missing:
        raise SpeechBrainImportError(f"{where}: {cls} misses required arguments {missing}")
    return values


_REQUIRED = {"in_channels", "out_channels", "intra_model", "inter_model", "kernel_size"}
_REQUIRED |= {"num_layers", "d_model", "nhead"}


def _find_modules(hparams: dict[str, Any], source: Path) -> dict[str, Any]:
    """The encoder, masknet and decoder objects: from ``modules:``, else the top-level keys."""
    modules = hparams.get("modules")
    found: dict[str, Any] = {}
    if isinstance(modules, Mapping):
        found = {k: modules[k] for k in ("encoder", "masknet", "decoder") if k in modules}
    fallbacks = {"encoder": "Encoder", "masknet": "MaskNet", "decoder": "Decoder"}
    for key, top in fallbacks.items():
        if key not in found and top in hparams:
            found[key] = hparams[top]
    missing = sorted(set(fallbacks) - set(found))
    if missing:
        raise SpeechBrainImportError(
            f"{source}: no {', '.join(missing)} module (looked in 'modules:' and for top-level "
            "Encoder/MaskNet/Decoder)"
        )
    return found


def config_from_hparams(hparams: dict[str, Any], source: Path) -> dict[str, Any]:
    """The sepkit model spec (``name: sepformer`` + fields) equivalent to SpeechBrain's modules."""
    mods = _find_modules(hparams, source)
    enc = _arguments(mods["encoder"], "Encoder", f"{source}: encoder")
    dec = _arguments(mods["decoder"], "Decoder", f"{source}: decoder")
    mask = _arguments(mods["masknet"], "Dual_Path_Model", f"{source}: masknet")
    intra = _arguments(mask["intra_model"], "SBTransformerBlock", f"{source}: masknet.intra_model")
    inter = _arguments(mask["inter_model"], "SBTransformerBlock", f"{source}: masknet.inter_model")

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise SpeechBrainImportError(f"{source}: unsupported SepFormer variant: {what}")

    kernel = int(enc["kernel_size"])
    need(enc["in_channels"] == 1, f"encoder in_channels {enc['in_channels']} (must be 1)")
    need(
        (dec["in_channels"], dec["out_channels"], dec["kernel_size"], dec["stride"])
        == (enc["out_channels"], 1, kernel, kernel // 2),
        "decoder must mirror the encoder (in_channels = encoder out_channels, out_channels 1, "
        f"same kernel, stride kernel//2); got {dec}",
    )
    need(not dec["bias"], "decoder with bias")
    need(
        (dec["padding"], dec["output_padding"], dec["groups"], dec["dilation"]) == (0, 0, 1, 1),
        "decoder padding/output_padding/groups/dilation",
    )
    need(mask["in_channels"] == enc["out_channels"], "masknet in_channels != encoder channels")
    need(mask["norm"] == "ln", f"masknet norm {mask['norm']!r} (only 'ln')")
    need(not mask["use_global_pos_enc"], "use_global_pos_enc")
    need(int(mask["K"]) % 2 == 0, f"odd chunk size K={mask['K']}")
    for name in ("num_layers", "d_model", "nhead", "d_ffn", "dropout", "activation"):
        need(intra[name] == inter[name], f"intra and inter models differ in {name}")
    for name in ("use_positional_encoding", "norm_before", "attention_type"):
        need(intra[name] == inter[name], f"intra and inter models differ in {name}")
    for block in (intra, inter):
        need(block["attention_type"] == "regularMHA", f"attention_type {block['attention_type']}")
        need(block["kdim"] is None and block["vdim"] is None, "kdim/vdim")
        need(block["d_model"] == mask["out_channels"], "d_model != masknet out_channels")
        need(block["activation"] in ("relu", "gelu"), f"activation {block['activation']}")
    return {
        "name": "sepformer",
        "num_spks": int(mask["num_spks"]),
        "N": int(enc["out_channels"]),
        "L": kernel,
        "d_model": int(intra["d_model"]),
        "nhead": int(intra["nhead"]),
        "d_ffn": int(intra["d_ffn"]),
        "num_layers": int(intra["num_layers"]),
        "num_blocks": int(mask["num_layers"]),
        "chunk_size": int(mask["K"]),
        "norm_before": bool(intra["norm_before"]),
        "positional_encoding": bool(intra["use_positional_encoding"]),
        "activation": str(intra["activation"]),
        "dropout": float(intra["dropout"]),
        "skip_around_intra": bool(mask["skip_around_intra"]),
        "linear_layer_after_inter_intra": bool(mask["linear_layer_after_inter_intra"]),
        "pad_input": False,  # SpeechBrain drops trailing samples that do not fill a window
    }


# --------------------------------------------------------------------------- state dicts

_LAYER = r"(\d+)\.(intra|inter)_mdl\.mdl\.layers\.(\d+)\."
_KEY_RULES: list[tuple[str, str]] = [
    (r"^encoder\.conv1d\.weight$", r"encoder.conv.weight"),
    (r"^decoder\.weight$", r"decoder.deconv.weight"),
    (r"^masknet\.norm\.", r"masknet.in_norm."),
    (r"^masknet\.conv1d\.weight$", r"masknet.in_proj.weight"),
    (r"^masknet\.conv2d\.", r"masknet.head."),
    (r"^masknet\.end_conv1x1\.weight$", r"masknet.end_proj.weight"),
    (r"^masknet\.output\.0\.", r"masknet.output."),
    (r"^masknet\.output_gate\.0\.", r"masknet.output_gate."),
    (
        r"^masknet\.dual_mdl\." + _LAYER + r"self_att\.att\.in_proj_(weight|bias)$",
        r"masknet.blocks.\1.\2.layers.\3.attn.in_proj.\4",
    ),
    (
        r"^masknet\.dual_mdl\." + _LAYER + r"self_att\.att\.out_proj\.",
        r"masknet.blocks.\1.\2.layers.\3.attn.out_proj.",
    ),
    (r"^masknet\.dual_mdl\." + _LAYER + r"pos_ffn\.ffn\.", r"masknet.blocks.\1.\2.layers.\3.ffn."),
    (
        r"^masknet\.dual_mdl\." + _LAYER + r"(norm[12])\.norm\.",
        r"masknet.blocks.\1.\2.layers.\3.\4.",
    ),
    (
        r"^masknet\.dual_mdl\.(\d+)\.(intra|inter)_mdl\.mdl\.norm\.norm\.",
        r"masknet.blocks.\1.\2.norm.",
    ),
    (r"^masknet\.dual_mdl\.(\d+)\.(intra|inter)_norm\.", r"masknet.blocks.\1.\2_norm."),
    (r"^masknet\.dual_mdl\.(\d+)\.(intra|inter)_linear\.w\.", r"masknet.blocks.\1.\2_linear."),
]
# SpeechBrain saves its positional tables; sepkit recomputes them (same formula, any length).
_DROPPED = re.compile(r"^masknet\.dual_mdl\.\d+\.(intra|inter)_mdl\.pos_enc\.pe$")


def convert_state(
    states: Mapping[str, Mapping[str, Tensor]], model: nn.Module
) -> dict[str, Tensor]:
    """Rename ``{module: SpeechBrain state dict}`` onto ``model``'s keys and shapes.

    1x1 convolutions become ``Linear`` weights by dropping their unit kernel axes.
    """
    targets = model.state_dict()
    out: dict[str, Tensor] = {}
    for module, state in states.items():
        for key, value in state.items():
            full = f"{module}.{key}"
            if _DROPPED.match(full):
                continue
            new = full
            for pattern, repl in _KEY_RULES:
                new, count = re.subn(pattern, repl, full)
                if count:
                    break
            if new not in targets:
                raise SpeechBrainImportError(
                    f"{module}.ckpt: key {key!r} has no counterpart in the sepkit model "
                    f"(mapped to {new!r}); is the hyperparams.yaml the one of these weights?"
                )
            want = targets[new].shape
            if value.numel() != targets[new].numel():
                raise SpeechBrainImportError(
                    f"{module}.ckpt: {key!r} has shape {tuple(value.shape)}, the model built from "
                    f"hyperparams.yaml expects {tuple(want)}"
                )
            out[new] = value.detach().to(targets[new].dtype).reshape(want).clone()
    missing = sorted(set(targets) - set(out))
    if missing:
        raise SpeechBrainImportError(
            f"checkpoints miss weights for {missing[:5]}{' ...' if len(missing) > 5 else ''}"
        )
    return out


def _read_ckpt(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise SpeechBrainImportError(
            f"{path}: missing (a SepFormer card has encoder.ckpt, "
            "masknet.ckpt and decoder.ckpt next to hyperparams.yaml)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise SpeechBrainImportError(f"{path}: not a readable state dict ({err})") from err
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise SpeechBrainImportError(f"{path}: expected a state dict of tensors")
    return dict(state)


def load_speechbrain_sepformer(model_dir: str | Path) -> nn.Module:
    """Build the sepkit SepFormer equal to a SpeechBrain model-card folder (see module doc)."""
    model_dir = Path(model_dir)
    hparams_file = model_dir / "hyperparams.yaml"
    if not hparams_file.is_file():
        raise SpeechBrainImportError(f"{model_dir}: no hyperparams.yaml (not a model card folder)")
    spec = config_from_hparams(load_hyperpyyaml(hparams_file), hparams_file)
    model = build_model(spec)
    states = {m: _read_ckpt(model_dir / f"{m}.ckpt") for m in ("encoder", "masknet", "decoder")}
    model.load_state_dict(convert_state(states, model), strict=True)
    model.eval()
    return model


def import_speechbrain(model_dir: str | Path, out_file: str | Path) -> nn.Module:
    """Convert a SpeechBrain SepFormer folder into a sepkit model file (``save_model``)."""
    model = load_speechbrain_sepformer(model_dir)
    hparams = load_hyperpyyaml(Path(model_dir) / "hyperparams.yaml")
    extra: dict[str, Any] = {"imported_from": str(Path(model_dir).resolve())}
    if isinstance(hparams.get("sample_rate"), int):
        extra["sample_rate"] = hparams["sample_rate"]
    save_model(out_file, model, extra=extra)
    return model


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``sepkit import-speechbrain MODEL_DIR --out FILE``."""
    parser.add_argument(
        "model_dir",
        metavar="MODEL_DIR",
        help="SpeechBrain model-card folder: hyperparams.yaml, encoder.ckpt, masknet.ckpt, "
        "decoder.ckpt",
    )
    parser.add_argument("--out", required=True, metavar="FILE", help="sepkit model file to write")


def run_import(args: argparse.Namespace) -> int:
    """``sepkit import-speechbrain``: 0 on success, 1 with a message naming the problem."""
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
