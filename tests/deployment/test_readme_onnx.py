"""The README's onnxruntime examples run as printed, on files sepkit exported, and give what
sepkit itself gives: the whole-signal example equals ``Separator.separate`` in one pass, the
stream example equals the causal model run offline."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

pytest.importorskip(
    "onnxruntime", reason="onnxruntime is not installed (pip install 'sepkit[test]')"
)
pytest.importorskip("onnxscript", reason="onnxscript is not installed (pip install 'sepkit[onnx]')")

from sepkit.export import export_onnx
from sepkit.inference import Separator
from sepkit.models.registry import build_model

README = (Path(__file__).parents[2] / "README.md").read_text()
ONNX_BLOCKS = [
    b
    for lang, b in re.findall(r"```(\w*)\n(.*?)```", README, flags=re.S)
    if lang == "python" and "ort.InferenceSession" in b
]
RATE = 8000


def test_readme_onnx_examples_give_sepkits_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert len(ONNX_BLOCKS) == 2, "the README's two onnxruntime examples were not found"
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    model = build_model(
        {"name": "convtasnet", "N": 32, "L": 16, "B": 16, "H": 32, "X": 3, "R": 1}, RATE
    ).eval()
    causal = build_model(
        {
            "name": "convtasnet",
            "N": 32,
            "L": 16,
            "B": 16,
            "H": 32,
            "X": 3,
            "R": 1,
            "causal": True,
            "norm": "cLN",
        },
        RATE,
    ).eval()
    export_onnx(model, RATE, tmp_path / "demo.onnx")
    export_onnx(causal, RATE, tmp_path / "causal-stream.onnx", stream=True)
    rng = np.random.default_rng(0)
    mix = (0.01 * rng.standard_normal(12_345)).astype(np.float32)  # quiet: the gain matters
    sf.write("mixture.wav", mix, RATE, subtype="FLOAT")

    scope: dict[str, object] = {}
    exec(ONNX_BLOCKS[0], scope)
    got = np.stack([sf.read(f"mixture_s{k}.wav", dtype="float32")[0] for k in (1, 2)])
    want = Separator(model, RATE, chunk_seconds=None).separate(mix, RATE).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)

    exec(ONNX_BLOCKS[1], scope)
    assert (
        isinstance(scope["state"], np.ndarray)
        and scope["state"].shape[1] == scope["meta"]["state_size"]
    )  # type: ignore[index]
    out = scope["out"]
    assert isinstance(out, np.ndarray) and out.shape == (1, 2, scope["block"])
