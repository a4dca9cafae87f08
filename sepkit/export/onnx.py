"""ONNX export through ``torch.export`` (the dynamo-based exporter), with dynamic axes.

Why this path: ``torch.export`` traces the model with symbolic sizes, so the length arithmetic in
the models (padding to whole frames, the dual-path chunking) stays a computation in the graph
instead of being frozen at the example's length, as the older TorchScript exporter did. It
translates every built-in model, SepFormer's attention included (``scaled_dot_product_attention``
becomes plain MatMul/Softmax nodes at opset 18). The hand-written CPU kernels
(:mod:`sepkit.models.conv_ops`) are switched off during export: the graph holds the stock ops
they stand in for, with the same numbers.

Two forms:

* whole signal: ``mix [batch, samples] -> sources [batch, speakers, samples]``, any length;
* stream (causal models): ``audio [batch, k * hop], state [batch, state_size] ->
  sources [batch, speakers, k * hop], state_out``; the caller keeps the state between calls
  (:mod:`sepkit.models.streaming` says what it holds and how output lags input).

The file's metadata says how to use it without sepkit: ``sample_rate``, ``num_speakers``,
``form``, and for a stream ``hop``, ``state_size``, ``lead`` (output samples that precede the
input) and ``latency_samples``. Whole-signal models were trained on mixtures near ``input_rms``;
scale the input to it and the outputs back, as ``sepkit separate`` does.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from sepkit import __version__
from sepkit.inference.common import INPUT_RMS
from sepkit.models.contract import spec_of
from sepkit.models.fast_path import stock_ops_only
from sepkit.models.streaming import ConvTasNetStream

OPSET = 18


class ExportError(RuntimeError):
    """The model cannot be exported, or not to that path; the message says which and why."""


@dataclass
class ExportInfo:
    """What was written: the file, its form, and the metadata stored in it."""

    path: Path
    form: str
    metadata: dict[str, str] = field(default_factory=dict)


def check_output_path(out: Path) -> None:
    """Refuse, before any work, a path whose folder is missing or not writable, or a folder."""
    out = Path(out)
    folder = out.parent
    if out.is_dir():
        raise ExportError(f"--out {out}: is a folder; give a file name such as {out}/model.onnx")
    if not folder.is_dir():
        raise ExportError(f"--out {out}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ExportError(f"--out {out}: the folder {folder} is not writable")


def _require_onnx() -> None:
    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise ExportError(f"ONNX export needs {' and '.join(missing)}: pip install 'sepkit[onnx]'")


def export_onnx(
    model: nn.Module, sample_rate: int, out: str | Path, *, stream: bool = False
) -> ExportInfo:
    """Write ``model`` to ``out`` as ONNX (``stream``: the stateful stream of a causal model).

    The file appears only when complete (written beside it, then renamed), so a failed export
    leaves an existing file as it was.
    """
    out = Path(out)
    check_output_path(out)
    _require_onnx()
    model = model.eval()
    spec = spec_of(model) or {}
    metadata = {
        "producer": f"sepkit {__version__}",
        "model": str(spec.get("name", type(model).__name__)),
        "sample_rate": str(int(sample_rate)),
        "form": "stream" if stream else "whole_signal",
    }
    if stream:
        module: nn.Module = ConvTasNetStream(model).eval()  # NotStreamableError names the cause
        assert isinstance(module, ConvTasNetStream)
        hop = module.hop
        args: tuple[Tensor, ...] = (torch.zeros(2, 4 * hop), module.initial_state(2))
        batch = torch.export.Dim("batch")
        dynamic: Any = {
            "audio": {0: batch, 1: hop * torch.export.Dim("hops")},
            "state": {0: batch},
        }
        names = (["audio", "state"], ["sources", "state_out"])
        metadata.update(
            num_speakers=str(module.num_spks),
            hop=str(hop),
            state_size=str(module.state_size),
            lead=str(module.lead),
            latency_samples=str(module.latency),
        )
    else:
        module = model
        args = (torch.randn(2, max(sample_rate // 2, 4096)),)
        window = _window_of(model)
        dynamic = {
            "mix": {0: torch.export.Dim("batch"), 1: torch.export.Dim("samples", min=window + 1)}
        }
        names = (["mix"], ["sources"])
        with torch.no_grad(), stock_ops_only():
            metadata["num_speakers"] = str(module(args[0]).shape[1])
        metadata["input_rms"] = str(INPUT_RMS)
        metadata["min_samples"] = str(window + 1)
    _export(module, args, dynamic, names, out, metadata)
    return ExportInfo(out, metadata["form"], metadata)


def _window_of(model: nn.Module) -> int:
    encoder = getattr(model, "encoder", None)
    return int(getattr(encoder, "kernel_size", 16))


def _export(
    module: nn.Module,
    args: tuple[Tensor, ...],
    dynamic: Any,
    names: tuple[list[str], list[str]],
    out: Path,
    metadata: dict[str, str],
) -> None:
    import onnx

    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            with torch.no_grad(), stock_ops_only():
                program = torch.onnx.export(
                    module,
                    args,
                    dynamo=True,
                    input_names=names[0],
                    output_names=names[1],
                    dynamic_shapes=dict(zip(names[0], dynamic.values(), strict=True)),
                    opset_version=OPSET,
                    external_data=False,
                    verbose=False,
                )
        except Exception as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ExportError(
                f"{metadata['model']} cannot be exported to ONNX ({type(err).__name__}: {first})"
            ) from err
        assert program is not None
        proto = program.model_proto
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save_model(proto, str(tmp))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def verify(info: ExportInfo, model: nn.Module, seed: int = 0) -> float | None:
    """Run the file with onnxruntime against ``model`` in PyTorch on random input; return the
    largest absolute difference (``None`` when onnxruntime is not installed). Lengths are not
    multiples of the hop, and a stream is fed blocks of several sizes."""
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    import onnxruntime as ort

    session = ort.InferenceSession(str(info.path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    worst = 0.0
    with torch.no_grad(), stock_ops_only():
        if info.form == "whole_signal":
            rate = int(info.metadata["sample_rate"])
            for length in (rate // 2 + 3, rate + 7, 2 * rate + 1):
                mix = (INPUT_RMS * rng.standard_normal((1, length))).astype(np.float32)
                (got,) = session.run(None, {"mix": mix})
                want = model(torch.from_numpy(mix)).numpy()
                worst = max(worst, float(np.abs(got - want).max()))
            return worst
        step = ConvTasNetStream(model).eval()
        state = step.initial_state(1)
        onnx_state = state.numpy()
        for hops in (1, 3, 2, 5, 1, 8):
            audio = (INPUT_RMS * rng.standard_normal((1, hops * step.hop))).astype(np.float32)
            got, onnx_state = session.run(None, {"audio": audio, "state": onnx_state})
            want, state = step(torch.from_numpy(audio), state)
            worst = max(worst, float(np.abs(got - want.numpy()).max()))
    return worst
