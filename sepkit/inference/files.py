"""Separating files: read (any rate, resampled as a stream), separate block by block, write."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr
import torch
from torch import nn

from sepkit.inference.common import (
    DEFAULT_CHUNK_SECONDS,
    DEFAULT_OVERLAP_SECONDS,
    InputError,
)
from sepkit.inference.streaming import StreamingSeparator, chunk_sizes, separate_waveform
from sepkit.utils.io import atomic_open


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
    chunk, overlap = chunk_sizes(model_sr, chunk_seconds, overlap_seconds)
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
