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

import argparse
import contextlib
import math
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr
import torch
import yaml
from torch import Tensor, nn

from sepkit.evaluation.shift_ensemble import ShiftEnsemble
from sepkit.losses import best_permutation, pairwise_si_snr
from sepkit.models.contract import NO_CARD_HELP
from sepkit.models.io import ModelFileError, load_state_checked, read_payload
from sepkit.models.registry import build_model
from sepkit.utils.io import atomic_open

DEFAULT_CHUNK_SECONDS = 8.0
DEFAULT_OVERLAP_SECONDS = 1.0
#: Model sample rate assumed when neither the checkpoint nor the run directory records one.
FALLBACK_SAMPLE_RATE = 8000
#: |correlation| above which two chunks' estimates of one source are trusted to fix sign / gain.
RELIABLE_CORRELATION = 0.5


#: RMS each segment is brought to before the model sees it, and undone on the estimates.
#: Training mixtures sit near it (sources at -25 dBFS active level); a recording far quieter
#: meets the normalisation layers' epsilon and is separated differently (docs/demo.md), while
#: separation itself is linear in the input's scale.
INPUT_RMS = 0.05


class InputError(RuntimeError):
    """An input of ``separate`` cannot be used: a recording (the message names the file) or an
    option value (the message names the option). The CLI prints it as one ``sepkit: error:``."""


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
        if chunk < 0 or overlap < 0 or (chunk and not 0 < overlap < chunk // 2 + 1):
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


def _to_mono(wav: Tensor | np.ndarray) -> np.ndarray:
    """``[T]`` or ``[channels, T]`` -> mono float32 (channels averaged: models are single-channel)."""
    array = wav.detach().cpu().numpy() if isinstance(wav, Tensor) else np.asarray(wav)
    if array.ndim == 2:
        array = array.mean(axis=0)
    if array.ndim != 1:
        raise ValueError(f"expected a waveform [T] or [channels, T], got shape {array.shape}")
    return array.astype(np.float32, copy=False)


def _chunk_sizes(
    model_sr: int, chunk_seconds: float | None, overlap_seconds: float
) -> tuple[int, int]:
    if not chunk_seconds:
        return 0, 0
    chunk = round(chunk_seconds * model_sr)
    overlap = max(1, round(overlap_seconds * model_sr))
    if overlap * 2 > chunk:
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
    mono = _to_mono(wav)
    if not np.all(np.isfinite(mono)):
        raise ValueError("waveform contains NaN or infinite samples")
    length = mono.shape[0]
    if length == 0:
        raise ValueError("waveform is empty")
    if sr != model_sr:
        mono = soxr.resample(mono, sr, model_sr, quality="HQ")
    chunk, overlap = _chunk_sizes(model_sr, chunk_seconds, overlap_seconds)
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


def _check_inputs(inputs: Sequence[Path]) -> list[Any]:
    """Open every input before any work, so a typo in the 50th path fails in the first second."""
    infos = []
    stems: dict[str, Path] = {}
    for path in inputs:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such file" + (" (a folder)" if path.is_dir() else ""))
        try:
            info = sf.info(str(path))
        except Exception as err:  # soundfile raises RuntimeError/LibsndfileError/OSError
            raise InputError(f"{path}: cannot read as audio ({err}); WAV or FLAC expected") from err
        if info.frames == 0:
            raise InputError(f"{path}: contains no audio samples")
        if path.stem in stems:
            raise InputError(
                f"{path} and {stems[path.stem]} would write the same outputs ({path.stem}_s1.wav "
                "...); rename one or separate them into different --out folders"
            )
        stems[path.stem] = path
        infos.append(info)
    return infos


def separate_file(
    model: nn.Module,
    path: Path,
    out_dir: Path,
    model_sr: int,
    chunk_seconds: float | None = DEFAULT_CHUNK_SECONDS,
    overlap_seconds: float = DEFAULT_OVERLAP_SECONDS,
    device: torch.device | str = "cpu",
    match_gain: bool = False,
) -> list[Path]:
    """Separate one file into ``out_dir/<name>_s1.wav ...`` (input's rate, 32-bit float WAV so
    estimates louder than full scale are not clipped), streaming block by block."""
    path = Path(path)
    info = _check_inputs([path])[0]
    sr, total = int(info.samplerate), int(info.frames)
    chunk, overlap = _chunk_sizes(model_sr, chunk_seconds, overlap_seconds)
    if not chunk:  # one pass over the whole file: there is nothing to stream
        data, _ = sf.read(str(path), dtype="float32", always_2d=True)
        _require_finite(path, data, 0, sr)
        est = separate_waveform(model, data.T, sr, model_sr, None, overlap_seconds, device)
        chunk_out = est.numpy()
        return _write_all(path, out_dir, chunk_out, sr)
    stream = StreamingSeparator(model, chunk, overlap, device, True, match_gain)
    to_model = soxr.ResampleStream(sr, model_sr, 1, dtype="float32") if sr != model_sr else None
    from_model: Any = None
    outputs: list[Path] = []
    written = 0
    block_frames = max(1, round((chunk - overlap) * sr / model_sr))
    was_training = model.training
    model.eval()
    try:
        with contextlib.ExitStack() as stack:
            writers: list[sf.SoundFile] = []

            def emit(est: np.ndarray, last: bool) -> None:
                nonlocal from_model, written
                if est.shape[-1] == 0 and not (last and writers):
                    return
                if not writers:
                    for k in range(est.shape[0]):
                        target = Path(out_dir) / f"{path.stem}_s{k + 1}.wav"
                        handle = stack.enter_context(atomic_open(target, "wb"))
                        writers.append(
                            stack.enter_context(
                                sf.SoundFile(
                                    handle,
                                    "w",
                                    samplerate=sr,
                                    channels=1,
                                    format="WAV",
                                    subtype="FLOAT",
                                )
                            )
                        )
                        outputs.append(target)
                    if sr != model_sr:
                        from_model = soxr.ResampleStream(
                            model_sr, sr, est.shape[0], dtype="float32"
                        )
                if est.shape[-1] == 0:  # only the output resampler's flush is left
                    est = np.zeros((len(writers), 0))
                frames = np.ascontiguousarray(est.T, dtype=np.float32)  # [n, C]
                if from_model is not None:
                    frames = from_model.resample_chunk(frames, last=last)
                frames = frames[: total - written]
                for k, writer in enumerate(writers):
                    writer.write(frames[:, k])
                written += frames.shape[0]

            reader = stack.enter_context(sf.SoundFile(str(path)))
            offset = 0
            for block in reader.blocks(blocksize=block_frames, dtype="float32", always_2d=True):
                _require_finite(path, block, offset, sr)
                mono = block.mean(axis=1)
                offset += block.shape[0]
                if to_model is not None:
                    mono = to_model.resample_chunk(mono)
                emit(stream.push(mono), last=False)
            if to_model is not None:  # flush the input resampler
                emit(
                    stream.push(to_model.resample_chunk(np.zeros(0, np.float32), last=True)), False
                )
            emit(stream.finish(), last=True)
            if written < total:  # resampler rounding: pad the last few samples
                for writer in writers:
                    writer.write(np.zeros(total - written, dtype=np.float32))
    except (RuntimeError, sf.LibsndfileError) as err:
        if isinstance(err, InputError) or str(path) in str(err):
            raise
        raise InputError(f"{path}: separation failed: {err}") from err
    finally:
        model.train(was_training)
    return outputs


def _require_finite(path: Path, frames: np.ndarray, offset: int, sr: int) -> None:
    """Refuse a recording with NaN/inf samples, naming the file and where the first one is.

    ``frames`` is ``[n, channels]`` and starts at sample ``offset`` of the file. A model fed NaN
    returns NaN everywhere, so writing its output would only hide the corrupt input.
    """
    finite = np.isfinite(frames).all(axis=1)
    if not finite.all():
        first = offset + int(np.argmin(finite))
        raise InputError(
            f"{path}: NaN or infinite samples (the first at {first / sr:.2f} s); the file is corrupt"
        )


def _write_all(path: Path, out_dir: Path, est: np.ndarray, sr: int) -> list[Path]:
    outputs = []
    for k in range(est.shape[0]):
        target = Path(out_dir) / f"{path.stem}_s{k + 1}.wav"
        with atomic_open(target, "wb") as handle:
            sf.write(handle, est[k], sr, format="WAV", subtype="FLOAT")
        outputs.append(target)
    return outputs


def separate_files(
    model: nn.Module,
    inputs: Sequence[Path],
    out_dir: Path,
    model_sr: int,
    chunk_seconds: float | None = DEFAULT_CHUNK_SECONDS,
    overlap_seconds: float = DEFAULT_OVERLAP_SECONDS,
    device: torch.device | str = "cpu",
    match_gain: bool = False,
) -> list[list[Path]]:
    """Separate each input file; every input is checked readable before any is processed."""
    paths = [Path(p) for p in inputs]
    _check_inputs(paths)
    return [
        separate_file(
            model, p, out_dir, model_sr, chunk_seconds, overlap_seconds, device, match_gain
        )
        for p in paths
    ]


# --------------------------------------------------------------------------- loading models


def _ckpt_order(path: Path) -> tuple[int, float, str]:
    digits = re.findall(r"\d+", path.stem)
    return (int(digits[-1]) if digits else -1, path.stat().st_mtime, path.name)


def resolve_checkpoint(source: str | Path) -> Path:
    """A model file or checkpoint path as given; a run directory means its
    ``checkpoints/averaged.pt`` (written only when the run averages checkpoints, and the model
    its test results are for), else ``best.pt``, else its newest ``checkpoints/ckpt-*.pt``."""
    source = Path(source)
    if source.is_file():
        return source
    if not source.is_dir():
        raise ModelFileError(f"{source}: no such run directory or model file")
    ckpt_dir = source / "checkpoints"
    for name in ("averaged.pt", "best.pt"):
        if (ckpt_dir / name).is_file():
            return ckpt_dir / name
    best = ckpt_dir / "best.pt"
    candidates = sorted(ckpt_dir.glob("ckpt-*.pt"), key=_ckpt_order) if ckpt_dir.is_dir() else []
    if not candidates:
        raise ModelFileError(
            f"{source}: no checkpoint found (looked for {best} and {ckpt_dir}/ckpt-*.pt); "
            "train first or pass --checkpoint FILE"
        )
    return candidates[-1]


def _sample_rate_of(payload: dict[str, Any], ckpt: Path) -> int:
    config = payload.get("config")
    if isinstance(config, dict):
        rate = (config.get("data") or {}).get("sample_rate")
        if rate:
            return int(rate)
    if payload.get("sample_rate"):
        return int(payload["sample_rate"])
    for run_dir in (ckpt.parent, ckpt.parent.parent):  # <run>/checkpoints/x.pt or <run>/x.pt
        config_path = run_dir / "config.yaml"
        if config_path.is_file():
            with contextlib.suppress(
                OSError, yaml.YAMLError, AttributeError, TypeError, ValueError
            ):
                rate = (yaml.safe_load(config_path.read_text()).get("data") or {}).get(
                    "sample_rate"
                )
                if rate:
                    return int(rate)
    warnings.warn(
        f"{ckpt}: records no sample rate; assuming {FALLBACK_SAMPLE_RATE} Hz. Save model files with "
        "save_model(path, model, extra={'sample_rate': sr}) to avoid this",
        stacklevel=3,
    )
    return FALLBACK_SAMPLE_RATE


def load_for_inference(source: str | Path) -> tuple[nn.Module, int, Path]:
    """``(model in eval mode, model sample rate, checkpoint path)`` from a run dir or file."""
    model, rate, ckpt, _ = _load(source)
    return model, rate, ckpt


def _load(source: str | Path) -> tuple[nn.Module, int, Path, int]:
    """:func:`load_for_inference` plus the run's ``train.test_shifts`` (1 if not recorded)."""
    ckpt = resolve_checkpoint(source)
    payload = read_payload(ckpt)  # read once: checkpoints can be large
    if not payload["model_spec"]:
        raise ModelFileError(
            f"{ckpt}: holds no model spec, so the model cannot be rebuilt from it alone (it was "
            f"trained as a module sepkit did not build); {NO_CARD_HELP}"
        )
    model = build_model(payload["model_spec"], sample_rate=_sample_rate_of(payload, ckpt))
    load_state_checked(model, payload["model_state"], ckpt)
    model.eval()
    config = payload.get("config")
    train = config.get("train") if isinstance(config, dict) else None
    shifts = train.get("test_shifts") if isinstance(train, dict) else None
    return model, _sample_rate_of(payload, ckpt), ckpt, int(shifts or 1)


def _pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Separator:
    """The Python API: ``Separator.from_pretrained("runs/x").separate(wav, sr) -> [C, T]``."""

    def __init__(
        self,
        model: nn.Module,
        sample_rate: int,
        *,
        chunk_seconds: float | None = DEFAULT_CHUNK_SECONDS,
        overlap_seconds: float = DEFAULT_OVERLAP_SECONDS,
        device: str | torch.device = "cpu",
        shifts: int = 1,
    ) -> None:
        self.device = _pick_device(device) if isinstance(device, str) else device
        model = model.to(self.device).eval()
        # shifts > 1: average over sub-frame delays of the input (evaluation/shift_ensemble.py)
        self.model = ShiftEnsemble(model, shifts) if shifts > 1 else model
        self.sample_rate = int(sample_rate)
        self.chunk_seconds = chunk_seconds
        self.overlap_seconds = overlap_seconds

    @classmethod
    def from_pretrained(
        cls, source: str | Path, *, shifts: int | None = None, **kwargs: Any
    ) -> Separator:
        """Load from a run directory, a training checkpoint or a model file. ``shifts=None``
        uses the run's ``train.test_shifts``, so separating a file matches the run's test
        results."""
        model, rate, _, run_shifts = _load(source)
        return cls(model, rate, shifts=run_shifts if shifts is None else shifts, **kwargs)

    def separate(self, waveform: Tensor | np.ndarray, sr: int | None = None) -> Tensor:
        """``waveform [T]`` or ``[channels, T]`` at ``sr`` (default: the model's rate) ->
        estimated sources ``[C, T]`` at ``sr``."""
        return separate_waveform(
            self.model,
            waveform,
            sr or self.sample_rate,
            self.sample_rate,
            self.chunk_seconds,
            self.overlap_seconds,
            self.device,
        )

    def separate_files(self, inputs: Sequence[str | Path], out_dir: str | Path) -> list[list[Path]]:
        return separate_files(
            self.model,
            [Path(p) for p in inputs],
            Path(out_dir),
            self.sample_rate,
            self.chunk_seconds,
            self.overlap_seconds,
            self.device,
        )


# --------------------------------------------------------------------------- command line


def add_separate_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``sepkit separate``."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-dir", type=Path, help="training run (uses checkpoints/best.pt)")
    source.add_argument("--checkpoint", type=Path, help="checkpoint or model file")
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="WAV/FLAC files")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--chunk-seconds",
        type=float,
        default=DEFAULT_CHUNK_SECONDS,
        help="chunk length for long files; 0 = whole file at once (default %(default)s)",
    )
    parser.add_argument(
        "--overlap-seconds",
        type=float,
        default=DEFAULT_OVERLAP_SECONDS,
        help="overlap between chunks (default %(default)s)",
    )
    parser.add_argument(
        "--shifts",
        type=int,
        default=None,
        help="average the estimate over this many sub-frame shifts of the input (slower, "
        "better); default: the run's train.test_shifts, 1 if it has none",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")


def run_separate(args: argparse.Namespace) -> int:
    """Run ``sepkit separate`` and print the written files.

    Failures propagate as exceptions (:class:`InputError`, :class:`ModelFileError`, ``OSError``):
    :func:`sepkit.cli.main` turns each into one ``sepkit: error:`` line and the exit status every
    other subcommand uses, so scripts need not special-case ``separate``.
    """
    _check_options(args.chunk_seconds, args.overlap_seconds, args.shifts)
    separator = Separator.from_pretrained(
        args.run_dir or args.checkpoint,
        chunk_seconds=args.chunk_seconds,
        overlap_seconds=args.overlap_seconds,
        device=args.device,
        shifts=args.shifts,
    )
    for written in separator.separate_files(args.inputs, args.out):
        for path in written:
            print(path)
    return 0


def _check_options(chunk_seconds: float, overlap_seconds: float, shifts: int | None) -> None:
    """Option values, checked before the model is loaded; the error names the option."""
    if shifts is not None and shifts < 1:
        raise InputError(f"--shifts {shifts}: must be >= 1 (1 = a single pass)")
    if not chunk_seconds >= 0 or math.isinf(chunk_seconds):  # also catches NaN
        raise InputError(
            f"--chunk-seconds {chunk_seconds}: must be a length in seconds, or 0 for the whole "
            "file at once"
        )
    if chunk_seconds and not 0 <= overlap_seconds <= chunk_seconds / 2:
        raise InputError(
            f"--overlap-seconds {overlap_seconds}: must be between 0 and half of --chunk-seconds "
            f"({chunk_seconds})"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sepkit.inference ARGS`` is ``sepkit separate ARGS`` (same errors and exit codes)."""
    from sepkit.cli import main as cli_main

    return cli_main(["separate", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
