"""The stateful stream of a causal Conv-TasNet equals the model run offline on the whole signal.

Offline reference: the model's own forward on the full mixture. Stream: blocks of random sizes
(not multiples of the hop) through :class:`LiveSeparator`, and whole hops straight into
:class:`ConvTasNetStream`. The model is random, with its depthwise and PReLU parameters
scrambled so that no layer is close to an identity and a dropped frame of state would show.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sepkit.inference import InputError, LiveSeparator
from sepkit.models.registry import build_model
from sepkit.models.streaming import ConvTasNetStream, NotStreamableError

CAUSAL = {
    "name": "convtasnet",
    "N": 32,
    "L": 16,
    "B": 16,
    "H": 24,
    "P": 3,
    "X": 4,
    "R": 2,
    "causal": True,
    "norm": "cLN",
    "mask_act": "sigmoid",
}


def causal_model(seed: int = 0, **changes: object) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model({**CAUSAL, **changes}, sample_rate=8000).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name or "act" in name:
                param.add_(0.3 * torch.randn_like(param))
    return model


def offline(model: torch.nn.Module, mix: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(mix)[None])[0].numpy()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_blocks_reproduce_the_offline_output(seed: int) -> None:
    rng = np.random.default_rng(seed)
    model = causal_model(seed)
    length = int(rng.integers(1500, 5000))
    mix = (0.1 * rng.standard_normal(length)).astype(np.float32)
    live = LiveSeparator(model, 8000)
    parts, start = [], 0
    while start < length:
        size = int(rng.choice([1, 3, 7, 8, 15, 64, 100, 333]))
        parts.append(live.push(mix[start : start + size]))
        start += size
    parts.append(live.finish())
    streamed = np.concatenate(parts, axis=1)
    assert streamed.shape == (2, length)
    np.testing.assert_allclose(streamed, offline(model, mix), rtol=0, atol=2e-6)


def test_output_lags_input_by_at_most_the_window() -> None:
    """Every pushed sample older than the encoder window is in the output already."""
    model = causal_model()
    live = LiveSeparator(model, 8000)
    rng = np.random.default_rng(5)
    pushed = returned = 0
    for size in rng.integers(1, 50, size=200):
        returned += live.push(rng.standard_normal(int(size)).astype(np.float32)).shape[1]
        pushed += int(size)
        assert pushed - live.latency <= returned <= pushed
    assert live.latency == 16


def test_stream_state_is_all_it_needs() -> None:
    """Two streams with the same state give the same output: nothing hides outside the state."""
    model = causal_model()
    step = ConvTasNetStream(model)
    torch.manual_seed(3)
    state = torch.randn(2, step.state_size)
    audio = torch.randn(2, 5 * step.hop)
    with torch.no_grad():
        a, state_a = step(audio, state)
        step(torch.randn(2, 3 * step.hop), step.initial_state(2))  # unrelated call in between
        b, state_b = step(audio, state)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(state_a, state_b, rtol=0, atol=0)


def test_a_longer_window_streams_too() -> None:
    """L = 4 hops: the output tail spans several blocks of one hop."""
    model = causal_model(L=32)
    live = LiveSeparator(model, 8000)
    mix = np.random.default_rng(1).standard_normal(2001).astype(np.float32)
    parts = [live.push(mix[i : i + 16]) for i in range(0, len(mix), 16)]
    streamed = np.concatenate([*parts, live.finish()], axis=1)
    np.testing.assert_allclose(streamed, offline(model, mix), rtol=0, atol=2e-6)


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({**CAUSAL, "causal": False, "norm": "gLN"}, "future"),
        ({"name": "dprnn", "N": 16, "L": 16, "hidden": 8, "chunk_size": 20}, "not a Conv-TasNet"),
    ],
)
def test_a_model_that_cannot_stream_is_refused_with_the_reason(spec: dict, reason: str) -> None:
    with pytest.raises(NotStreamableError, match=reason) as info:
        LiveSeparator(build_model(spec), 8000)
    assert "causal: true" in str(info.value)


def test_bad_blocks_are_refused_and_named() -> None:
    live = LiveSeparator(causal_model(), 8000)
    with pytest.raises(InputError, match=r"sample-rate mismatch.*16000 Hz.*8000 Hz"):
        live.push(np.zeros(10, np.float32), sample_rate=16000)
    live.push(np.zeros(100, np.float32))
    bad = np.zeros(10, np.float32)
    bad[4] = np.nan
    with pytest.raises(InputError, match="NaN or infinite input at sample 104"):
        live.push(bad)
    with pytest.raises(InputError, match="mono"):
        live.push(np.zeros((2, 10), np.float32))
    live.finish()
    with pytest.raises(InputError, match="finished"):
        live.push(np.zeros(10, np.float32))


def test_the_onnxruntime_engine_streams_the_same_output() -> None:
    """``engine="onnxruntime"``: the exported stream, fed random blocks, equals the offline
    model as the PyTorch engine does (to 1e-4, ONNX's float rounding)."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    pytest.importorskip("onnxscript", reason="onnxscript is not installed (sepkit[onnx])")
    model = causal_model(7)
    rng = np.random.default_rng(7)
    mix = (0.1 * rng.standard_normal(3001)).astype(np.float32)
    live = LiveSeparator(model, 8000, engine="onnxruntime")
    parts, start = [], 0
    while start < len(mix):
        size = int(rng.choice([5, 16, 37, 64, 200]))
        parts.append(live.push(mix[start : start + size]))
        start += size
    streamed = np.concatenate([*parts, live.finish()], axis=1)
    assert streamed.shape == (2, len(mix))
    np.testing.assert_allclose(streamed, offline(model, mix), rtol=0, atol=1e-4)
