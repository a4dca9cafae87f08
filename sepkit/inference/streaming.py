"""Separating recordings of any length: chunked overlap-add with speaker-order tracking.

How a long recording is processed, and why
------------------------------------------
A separation model's memory grows with its input length (SepFormer quadratically inside a chunk),
so recordings are cut into chunks of ``chunk_seconds`` that overlap by ``overlap_seconds``. Three
things go wrong if the chunks are simply glued together, and each has its fix here:

1. *Speaker order.* A PIT-trained model outputs the speakers in an arbitrary order that can differ
   from one chunk to the next. Each chunk's outputs are reordered to the permutation that best
   matches (SI-SNR) the previous chunk's outputs on the samples they share — the overlap.
2. *Sign.* SI-SNR does not see the sign of an estimate, so a model may return ``-s`` in one chunk
   and ``s`` in the next; cross-fading those cancels the speech. A source whose overlap is strongly
   anti-correlated (correlation < -0.5) with the previous chunk's is negated. Its gain can also be
   matched (``match_gain``; off by default because per-chunk gain estimates drift like a random
   walk over a long file, while SI-SNR-trained models keep a roughly consistent level anyway).
3. *Edges.* Outputs are worst near a chunk's borders (no context). The cross-fade is a raised
   cosine over the *middle half* of the overlap only: in its first quarter the output is the
   previous chunk's alone, in its last quarter the new chunk's alone, so neither chunk's edge
   reaches the output. With a model whose receptive field is under a quarter of the overlap, the
   chunked output equals the unchunked one (a test checks it).

Memory is bounded by one chunk: :class:`StreamingSeparator` takes input in blocks and returns
finished output as soon as no later chunk can change it; :func:`separate_files` reads, resamples
(``soxr`` streams, when the file's rate differs from the model's) and writes each block as it goes,
so a 10-hour file needs the same memory as a 10-second one.
"""

from __future__ import annotations

import numpy as np
import soxr
import torch
from torch import Tensor, nn

from sepkit.inference.common import (
    DEFAULT_CHUNK_SECONDS,
    DEFAULT_OVERLAP_SECONDS,
    INPUT_RMS,
    RELIABLE_CORRELATION,
    overlap_fits,
)
from sepkit.losses import best_permutation, pairwise_si_snr


def _crossfade(overlap: int) -> np.ndarray:
    """Weights of the *new* chunk over the overlap: 0 for the first quarter, a raised cosine
    over the middle half, 1 for the last quarter (the previous chunk gets ``1 - w``)."""
    w = np.zeros(overlap, dtype=np.float64)
    start, stop = overlap // 4, overlap - overlap // 4
    ramp = stop - start
    if ramp > 0:
        w[start:stop] = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp) + 0.5) / ramp)
    w[stop:] = 1.0
    return w


class StreamingSeparator:
    """Chunked overlap-add separation of a mixture fed in blocks of any size (model rate).

    ``push(block)`` returns the output samples ``[C, n]`` that are final so far (``n`` may be 0);
    ``finish()`` returns the rest. Concatenated, the outputs have exactly the input's length.
    ``chunk = 0`` disables chunking (the whole input is separated at once in ``finish``).
    """

    def __init__(
        self,
        model: nn.Module,
        chunk: int,
        overlap: int,
        device: torch.device | str = "cpu",
        align: bool = True,
        match_gain: bool = False,
    ) -> None:
        if chunk < 0 or (chunk and not (overlap > 0 and overlap_fits(chunk, overlap))):
            raise ValueError(
                f"chunk of {chunk} samples with overlap {overlap}: need 0 < overlap <= chunk / 2"
            )
        self.model = model
        self.chunk = chunk
        self.overlap = overlap
        self.device = torch.device(device)
        self.align = align
        self.match_gain = match_gain
        self._pending = np.zeros(0, dtype=np.float32)
        self._tail: np.ndarray | None = None  # previous chunk's overlap part, awaiting cross-fade
        self._fade = _crossfade(overlap) if chunk else np.zeros(0)
        self.num_sources: int | None = None
        self.chunks_done = 0

    def _run(self, segment: np.ndarray) -> np.ndarray:
        """Model on one segment ``[n] -> [C, n]`` (float64 on the host)."""
        rms = float(np.sqrt(np.mean(np.square(segment, dtype=np.float64)))) if len(segment) else 0.0
        gain = INPUT_RMS / rms if rms > 1e-9 else 1.0
        scaled = np.ascontiguousarray(segment * gain, dtype=np.float32)
        mix = torch.from_numpy(scaled).to(self.device)
        with torch.inference_mode():
            est = self.model(mix.unsqueeze(0)) / gain
        if est.dim() != 3 or est.shape[0] != 1:
            raise RuntimeError(f"model returned shape {tuple(est.shape)}; expected [1, C, T]")
        est = est[0].float().cpu()
        n = segment.shape[0]
        if est.shape[-1] != n:  # a model that trims or pads: restore the input length
            est = torch.nn.functional.pad(est[..., :n], (0, max(0, n - est.shape[-1])))
        self.num_sources = est.shape[0]
        self.chunks_done += 1
        return est.double().numpy()

    def _aligned(self, est: np.ndarray) -> np.ndarray:
        """Reorder (and fix the sign of) ``est`` to match the previous chunk on the overlap."""
        assert self._tail is not None
        width = min(self.overlap, est.shape[-1])
        prev, cur = self._tail[:, :width], est[:, :width]
        if self.align and est.shape[0] > 1:
            scores = pairwise_si_snr(torch.from_numpy(cur)[None], torch.from_numpy(prev)[None])
            perm = best_permutation(scores)[0].numpy()  # est[perm[k]] continues previous source k
            est, cur = est[perm], cur[perm]
        prev_c, cur_c = prev - prev.mean(-1, keepdims=True), cur - cur.mean(-1, keepdims=True)
        dot = (prev_c * cur_c).sum(-1)
        cur_energy = (cur_c * cur_c).sum(-1)
        norms = np.sqrt((prev_c * prev_c).sum(-1) * cur_energy)
        corr = np.divide(dot, norms, out=np.zeros_like(dot), where=norms > 0)
        reliable = np.abs(corr) >= RELIABLE_CORRELATION
        if self.match_gain:
            gain = np.divide(dot, cur_energy, out=np.ones_like(dot), where=cur_energy > 0)
            gain = np.sign(gain) * np.clip(np.abs(gain), 0.1, 10.0)
        else:
            gain = np.sign(corr)
        factor = np.where(reliable, gain, 1.0)
        return est * factor[:, None]

    def _merge(self, est: np.ndarray, final: bool) -> np.ndarray:
        if self._tail is None:  # first chunk
            if final:
                return est
            self._tail = est[:, -self.overlap :]
            return est[:, : -self.overlap]
        est = self._aligned(est)
        width = min(self.overlap, est.shape[-1])
        w = self._fade[:width]
        head = self._tail[:, :width] * (1.0 - w) + est[:, :width] * w
        if final:
            self._tail = None
            return np.concatenate([head, est[:, width:]], axis=-1)
        self._tail = est[:, -self.overlap :]
        return np.concatenate([head, est[:, width : -self.overlap]], axis=-1)

    def _empty(self) -> np.ndarray:
        return np.zeros((self.num_sources or 0, 0), dtype=np.float64)

    def push(self, block: np.ndarray) -> np.ndarray:
        """Add mixture samples; return output samples that no later chunk will change."""
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        self._pending = np.concatenate([self._pending, block])
        if not self.chunk:
            return self._empty()
        out: list[np.ndarray] = []
        hop = self.chunk - self.overlap
        while self._pending.shape[0] >= self.chunk:
            out.append(self._merge(self._run(self._pending[: self.chunk]), final=False))
            self._pending = self._pending[hop:]
        return np.concatenate(out, axis=-1) if out else self._empty()

    def finish(self) -> np.ndarray:
        """Separate what is left and flush the last cross-fade."""
        pending, self._pending = self._pending, np.zeros(0, dtype=np.float32)
        if self._tail is None:
            return self._run(pending) if pending.shape[0] else self._empty()
        if pending.shape[0] <= self.overlap:  # nothing new after the last full chunk
            tail, self._tail = self._tail, None
            return tail
        return self._merge(self._run(pending), final=True)


def to_mono(wav: Tensor | np.ndarray) -> np.ndarray:
    """``[T]`` or ``[channels, T]`` -> mono float32 (channels averaged: models are single-channel)."""
    array = wav.detach().cpu().numpy() if isinstance(wav, Tensor) else np.asarray(wav)
    if array.ndim == 2:
        array = array.mean(axis=0)
    if array.ndim != 1:
        raise ValueError(f"expected a waveform [T] or [channels, T], got shape {array.shape}")
    return array.astype(np.float32, copy=False)


def chunk_sizes(
    model_sr: int, chunk_seconds: float | None, overlap_seconds: float
) -> tuple[int, int]:
    if not chunk_seconds:
        return 0, 0
    chunk = round(chunk_seconds * model_sr)
    overlap = max(1, round(overlap_seconds * model_sr))
    if not overlap_fits(chunk, overlap):
        raise ValueError(
            f"overlap_seconds={overlap_seconds} must be at most half of chunk_seconds={chunk_seconds}"
        )
    return chunk, overlap


def separate_waveform(
    model: nn.Module,
    wav: Tensor | np.ndarray,
    sr: int,
    model_sr: int,
    chunk_seconds: float | None = DEFAULT_CHUNK_SECONDS,
    overlap_seconds: float = DEFAULT_OVERLAP_SECONDS,
    device: torch.device | str = "cpu",
    align: bool = True,
    match_gain: bool = False,
) -> Tensor:
    """Separate an in-memory waveform (``[T]`` or ``[channels, T]`` at ``sr``) into ``[C, T]``
    at ``sr``. ``chunk_seconds=None`` (or 0) runs the model on the whole signal at once."""
    mono = to_mono(wav)
    if not np.all(np.isfinite(mono)):
        raise ValueError("waveform contains NaN or infinite samples")
    length = mono.shape[0]
    if length == 0:
        raise ValueError("waveform is empty")
    if sr != model_sr:
        mono = soxr.resample(mono, sr, model_sr, quality="HQ")
    chunk, overlap = chunk_sizes(model_sr, chunk_seconds, overlap_seconds)
    was_training = model.training
    model.eval()
    try:
        stream = StreamingSeparator(model, chunk, overlap, device, align, match_gain)
        step = chunk or len(mono)
        parts = [stream.push(mono[i : i + step]) for i in range(0, len(mono), step)]
        parts.append(stream.finish())
    finally:
        model.train(was_training)
    est = np.concatenate([p for p in parts if p.shape[-1]], axis=-1).astype(np.float32)
    if sr != model_sr:
        est = soxr.resample(np.ascontiguousarray(est.T), model_sr, sr, quality="HQ").T
        est = est[:, :length]
        if est.shape[-1] < length:
            est = np.pad(est, ((0, 0), (0, length - est.shape[-1])))
    return torch.from_numpy(np.ascontiguousarray(est, dtype=np.float32))
