"""Live separation: audio in blocks of any size, separated audio out block by block.

:class:`LiveSeparator` feeds a causal model's stateful stream
(:class:`~sepkit.models.streaming.ConvTasNetStream`) whole hops as they arrive and keeps the
rest for the next block. What it returns is the model's offline output on the whole signal,
``latency`` samples later; concatenated with :meth:`LiveSeparator.finish`, exactly the input's
length. Unlike the chunked :class:`~sepkit.inference.streaming.StreamingSeparator`, nothing is
computed twice and nothing waits for a chunk: the delay is the encoder window plus the block.

No input normalisation: the chunked path scales each chunk to a fixed RMS, which needs the
chunk's future. A causal cLN model normalises every frame itself, so its output is proportional
to its input level anyway.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import torch
from torch import nn

from sepkit.inference.common import InputError
from sepkit.models.streaming import ConvTasNetStream
from sepkit.utils.io import atomic_open

#: How a stream's blocks are computed: eager PyTorch, or the exported stream on onnxruntime.
Engine = Literal["torch", "onnxruntime"]


class LiveSeparator:
    """``push(block [n]) -> [C, m]`` of finished output (``m`` may be 0); ``finish() -> [C, r]``.

    ``sample_rate`` is the model's; a block announced at another rate is refused (resample
    before streaming: a live resampler would add its own delay). ``engine="onnxruntime"`` runs
    the blocks through the exported stream (several times faster for short blocks; needs
    onnxruntime and the ``onnx`` extra).
    """

    def __init__(
        self,
        model: nn.Module,
        sample_rate: int,
        device: torch.device | str = "cpu",
        engine: Engine = "torch",
    ):
        self.stream = ConvTasNetStream(model).to(device).eval()
        self.sample_rate = int(sample_rate)
        self.hop = self.stream.hop
        self.num_sources = self.stream.num_spks
        self.engine = engine
        if engine == "torch":
            self._step: Callable[[np.ndarray], np.ndarray] = _TorchStep(self.stream, device)
        elif engine == "onnxruntime":
            self._step = _OnnxRuntimeStep(model, self.sample_rate, self.stream.state_size)
        else:
            raise InputError(f"engine {engine!r}: one of torch, onnxruntime")
        self._pending = np.zeros(0, dtype=np.float32)
        self._to_drop = self.stream.lead  # stream output before the first input sample
        self.samples_in = 0
        self.samples_out = 0
        self._finished = False

    @property
    def latency(self) -> int:
        """Algorithmic latency in samples (the encoder window); a block adds its own length."""
        return self.stream.latency

    def push(self, block: np.ndarray, sample_rate: int | None = None) -> np.ndarray:
        """Add the next mono samples; return the output samples they complete."""
        if self._finished:
            raise InputError("this stream has finished; start a new one with Separator.stream()")
        if sample_rate is not None and int(sample_rate) != self.sample_rate:
            raise InputError(
                f"sample-rate mismatch: a block at {sample_rate} Hz, but the model streams at "
                f"{self.sample_rate} Hz; resample the input to {self.sample_rate} Hz first"
            )
        samples = np.asarray(block, dtype=np.float32)
        if samples.ndim != 1:
            raise InputError(f"a block must be mono samples [n], got shape {samples.shape}")
        if not np.isfinite(samples).all():
            first = self.samples_in + int(np.argmin(np.isfinite(samples)))
            raise InputError(f"NaN or infinite input at sample {first} of the stream")
        self.samples_in += samples.shape[0]
        self._pending = np.concatenate([self._pending, samples])
        return self._run(self._pending.shape[0] - self._pending.shape[0] % self.hop)

    def finish(self) -> np.ndarray:
        """Flush the stream with zeros; return the remaining output up to the input's length.
        The stream is over: push no more."""
        if self._finished:
            return np.zeros((self.num_sources, 0), dtype=np.float32)
        self._finished = True
        flush = self.stream.lead + (-self._pending.shape[0]) % self.hop
        self._pending = np.concatenate([self._pending, np.zeros(flush, dtype=np.float32)])
        out = self._run(self._pending.shape[0])
        out = out[:, : out.shape[1] - (self.samples_out - self.samples_in)]
        self.samples_out = self.samples_in
        return out

    def _run(self, count: int) -> np.ndarray:
        if count == 0:
            return np.zeros((self.num_sources, 0), dtype=np.float32)
        audio = np.ascontiguousarray(self._pending[:count])
        self._pending = self._pending[count:]
        est = self._step(audio)
        drop = min(self._to_drop, est.shape[1])
        self._to_drop -= drop
        est = est[:, drop:]
        self.samples_out += est.shape[1]
        return est


class _TorchStep:
    """Whole hops ``[n] -> [C, n]`` through the stream module, its state kept here."""

    def __init__(self, stream: ConvTasNetStream, device: torch.device | str) -> None:
        self.stream = stream
        self.device = torch.device(device)
        self.state = stream.initial_state(1)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(audio).to(self.device).unsqueeze(0)
            out, self.state = self.stream(x, self.state)
        result: np.ndarray = out[0].float().cpu().numpy()
        return result


class _OnnxRuntimeStep:
    """The same stream exported to ONNX and run by onnxruntime on one thread.

    Why: a block of a few frames is ~200 small ops; eager PyTorch pays its per-op dispatch on
    each, onnxruntime far less (docs/benchmarks.md, live separation: real-time factor 0.06
    against 0.29 for 8 ms blocks). The export runs once, into a temporary file the session
    has read before it goes.
    """

    def __init__(self, model: nn.Module, sample_rate: int, state_size: int) -> None:
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise InputError(
                "engine onnxruntime: onnxruntime is not installed (pip install onnxruntime)"
            ) from err
        from sepkit.export.onnx import export_onnx

        with tempfile.TemporaryDirectory() as folder:
            info = export_onnx(model, sample_rate, Path(folder) / "stream.onnx", stream=True)
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            self.session = ort.InferenceSession(
                str(info.path), options, providers=["CPUExecutionProvider"]
            )
        self.state = np.zeros((1, state_size), dtype=np.float32)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        out, self.state = self.session.run(None, {"audio": audio[None], "state": self.state})
        result: np.ndarray = out[0]
        return result


@dataclass
class StreamReport:
    """What ``sepkit stream`` measured: how long each block took against its duration."""

    outputs: list[Path]
    sample_rate: int
    block: int
    latency: int
    seconds_of_audio: float
    seconds_of_compute: float
    late_blocks: int = 0
    block_times: list[float] = field(default_factory=list)

    @property
    def real_time_factor(self) -> float:
        return self.seconds_of_compute / max(self.seconds_of_audio, 1e-12)

    def summary(self) -> str:
        worst = max(self.block_times, default=0.0) * 1000
        rate = self.sample_rate
        return (
            f"streamed {self.seconds_of_audio:.2f} s in blocks of {self.block} samples "
            f"({1000 * self.block / rate:.1f} ms): algorithmic latency "
            f"{1000 * self.latency / rate:.1f} ms (+ one block), real-time factor "
            f"{self.real_time_factor:.3f}, slowest block {worst:.2f} ms, "
            f"{self.late_blocks} blocks took longer than their duration"
        )


def stream_file(
    live: LiveSeparator, path: Path, out_dir: Path, block: int, paced: bool = False
) -> StreamReport:
    """Separate ``path`` as if it were live: read ``block`` samples at a time, push each, write
    what comes back. ``paced`` waits for each block's wall-clock time, as a sound card would."""
    if block < 1:
        raise InputError(f"--block-size {block}: must be at least 1 sample")
    try:
        info = sf.info(str(path))
    except Exception as err:  # soundfile raises RuntimeError/LibsndfileError/OSError
        raise InputError(f"{path}: cannot read as audio ({err}); WAV or FLAC expected") from err
    if int(info.samplerate) != live.sample_rate:
        raise InputError(
            f"{path}: sample-rate mismatch: the file is {info.samplerate} Hz, the model streams "
            f"at {live.sample_rate} Hz; resample it first, or use sepkit separate (resamples)"
        )
    if not Path(out_dir).is_dir():
        raise InputError(f"--out {out_dir}: no such folder")
    targets = [Path(out_dir) / f"{path.stem}_s{k + 1}.wav" for k in range(live.num_sources)]
    report = StreamReport(targets, live.sample_rate, block, live.latency, 0.0, 0.0)
    with contextlib.ExitStack() as stack:
        writers = [
            stack.enter_context(
                sf.SoundFile(
                    stack.enter_context(atomic_open(t, "wb")),
                    "w",
                    samplerate=live.sample_rate,
                    channels=1,
                    format="WAV",
                    subtype="FLOAT",
                )
            )
            for t in targets
        ]
        start = time.perf_counter()
        reader = stack.enter_context(sf.SoundFile(str(path)))
        for index, frames in enumerate(
            reader.blocks(blocksize=block, dtype="float32", always_2d=True)
        ):
            if paced:
                due = start + (index + 1) * block / live.sample_rate
                time.sleep(max(0.0, due - time.perf_counter()))
            tic = time.perf_counter()
            try:
                est = live.push(frames.mean(axis=1))
            except InputError as err:
                raise InputError(f"{path}: {err}") from err
            took = time.perf_counter() - tic
            report.block_times.append(took)
            report.late_blocks += took > frames.shape[0] / live.sample_rate
            report.seconds_of_compute += took
            _write(writers, est)
        tic = time.perf_counter()
        _write(writers, live.finish())
        report.seconds_of_compute += time.perf_counter() - tic
    report.seconds_of_audio = live.samples_in / live.sample_rate
    return report


def _write(writers: list[sf.SoundFile], est: np.ndarray) -> None:
    for writer, source in zip(writers, est, strict=True):
        writer.write(source)
