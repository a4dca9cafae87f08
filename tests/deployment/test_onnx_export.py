"""ONNX export of every built-in model, checked with onnxruntime against PyTorch.

Each model is exported once (module-scoped fixture) and run by onnxruntime on lengths that are
not multiples of its hop, at batch 1 and 3 (the example batch was 2: both axes are dynamic).
The causal model's stream is exported with its state as input and output, and a stream of
blocks through onnxruntime is compared with the model run offline on the whole signal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

ort = pytest.importorskip(
    "onnxruntime", reason="onnxruntime is not installed (pip install 'sepkit[test]')"
)
pytest.importorskip("onnxscript", reason="onnxscript is not installed (pip install 'sepkit[onnx]')")

from sepkit.export import ExportError, export_onnx  # noqa: E402
from sepkit.models.registry import build_model  # noqa: E402
from sepkit.models.streaming import NotStreamableError  # noqa: E402

RATE = 8000
MODELS = {
    "convtasnet": {"name": "convtasnet", "N": 32, "L": 16, "B": 16, "H": 32, "X": 3, "R": 1},
    "causal": {
        "name": "convtasnet",
        "N": 32,
        "L": 16,
        "B": 16,
        "H": 32,
        "X": 3,
        "R": 2,
        "causal": True,
        "norm": "cLN",
        "mask_act": "sigmoid",
    },
    "dprnn": {"name": "dprnn", "N": 16, "L": 16, "hidden": 8, "chunk_size": 20, "num_blocks": 1},
    "sepformer": {
        "name": "sepformer",
        "N": 32,
        "L": 16,
        "d_model": 32,
        "nhead": 4,
        "d_ffn": 64,
        "num_layers": 1,
        "num_blocks": 1,
        "chunk_size": 20,
    },
}


@pytest.fixture(scope="module", params=sorted(MODELS))
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    torch.manual_seed(0)
    model = build_model(MODELS[request.param], sample_rate=RATE).eval()
    path = tmp_path_factory.mktemp("onnx") / f"{request.param}.onnx"
    info = export_onnx(model, RATE, path)
    return model, info


def test_whole_signal_matches_pytorch_at_any_length_and_batch(exported) -> None:
    model, info = exported
    session = ort.InferenceSession(str(info.path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for batch, length in [(1, 8000), (1, 4001), (3, 12345), (1, 777), (2, 16003)]:
        mix = (0.05 * rng.standard_normal((batch, length))).astype(np.float32)
        (got,) = session.run(None, {"mix": mix})
        with torch.no_grad():
            want = model(torch.from_numpy(mix)).numpy()
        assert got.shape == want.shape == (batch, 2, length)
        assert np.abs(got - want).max() <= 1e-4, (length, np.abs(got - want).max())


def test_metadata_says_how_to_use_the_file(exported) -> None:
    import onnx

    _model, info = exported
    meta = {p.key: p.value for p in onnx.load(str(info.path)).metadata_props}
    assert meta["sample_rate"] == "8000" and meta["num_speakers"] == "2"
    assert meta["form"] == "whole_signal" and float(meta["input_rms"]) > 0
    assert meta["producer"].startswith("sepkit")


def test_causal_stream_with_state_passing_equals_the_offline_model(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = build_model(MODELS["causal"], sample_rate=RATE).eval()
    info = export_onnx(model, RATE, tmp_path / "stream.onnx", stream=True)
    meta = info.metadata
    hop, lead = int(meta["hop"]), int(meta["lead"])
    assert meta["form"] == "stream" and int(meta["latency_samples"]) == 16
    session = ort.InferenceSession(str(info.path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(2)
    length = 3001
    mix = (0.05 * rng.standard_normal(length)).astype(np.float32)
    # the caller's loop: whole hops, zeros at the end to flush, drop the first `lead` outputs
    padded = np.concatenate([mix, np.zeros(lead + (-length) % hop, np.float32)])
    state = np.zeros((1, int(meta["state_size"])), np.float32)
    outs, start = [], 0
    while start < len(padded):
        size = hop * int(rng.integers(1, 9))
        block = padded[None, start : start + size]
        out, state = session.run(None, {"audio": block, "state": state})
        outs.append(out[0])
        start += size
    streamed = np.concatenate(outs, axis=1)[:, lead : lead + length]
    with torch.no_grad():
        want = model(torch.from_numpy(mix)[None])[0].numpy()
    assert np.abs(streamed - want).max() <= 1e-4


def test_stream_export_of_a_non_causal_model_is_refused(tmp_path: Path) -> None:
    model = build_model(MODELS["convtasnet"], sample_rate=RATE)
    with pytest.raises(NotStreamableError, match="future frames"):
        export_onnx(model, RATE, tmp_path / "x.onnx", stream=True)
    assert not list(tmp_path.iterdir())


def test_a_model_the_exporter_cannot_translate_is_named(tmp_path: Path) -> None:
    class ThroughNumpy(torch.nn.Module):
        def forward(self, mix: torch.Tensor) -> torch.Tensor:
            # leaves the graph: nothing an exporter can trace
            sorted_mix = torch.from_numpy(np.sort(mix.detach().numpy(), axis=-1))
            return torch.stack([mix, sorted_mix], dim=1)

    with pytest.raises(ExportError, match="ThroughNumpy cannot be exported to ONNX"):
        export_onnx(ThroughNumpy(), RATE, tmp_path / "x.onnx")
    assert not list(tmp_path.iterdir())  # no file, no temporary left behind
