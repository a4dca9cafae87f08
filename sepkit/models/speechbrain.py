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

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sepkit.models.hyperpyyaml import (
    New,
    SpeechBrainImportError,
    load_hyperpyyaml,
)
from sepkit.models.io import save_model
from sepkit.models.registry import build_model

DUAL_PATH = "speechbrain.lobes.models.dual_path."


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
