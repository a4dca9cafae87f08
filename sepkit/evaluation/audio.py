"""Saving test examples as WAV files that people can listen to (``run_dir/audio/<id>/``).

Each file is peak-normalised on its own. Why not keep the relative levels: models trained with
SI-SNR produce estimates at an arbitrary scale (SI-SNR ignores gain), so an estimate may be 20 dB
louder than its reference or clip; normalising every file makes them comparable by ear and safe to
write as 16-bit PCM (the most widely playable WAV, in particular by browsers in the report).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import soundfile as sf
from torch import Tensor

from sepkit.utils.io import atomic_write_with

#: Peak level of saved files (a little below full scale so resampling players do not clip).
PEAK = 0.9
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(utt_id: str, max_len: int = 100) -> str:
    """A file-system-safe directory name for an utterance ID.

    IDs from real corpora contain ``/`` (relative paths), spaces, or are very long. When the ID had
    to be changed, a short hash of the original is appended so two IDs never share a directory.
    """
    name = _UNSAFE.sub("_", utt_id).strip("._") or "utt"
    if name != utt_id or len(name) > max_len:
        digest = hashlib.sha1(utt_id.encode("utf-8")).hexdigest()[:8]
        name = f"{name[: max_len - 9]}-{digest}"
    return name


def _normalized(signal: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(signal))) if signal.size else 0.0
    if not np.isfinite(peak):
        raise ValueError("signal is not finite")
    if peak == 0.0:
        return signal.astype(np.float32)
    return (signal * (PEAK / peak)).astype(np.float32)


def write_wav(path: Path, signal: np.ndarray, sample_rate: int) -> None:
    """Atomically write a mono 16-bit WAV."""
    data = np.asarray(signal, dtype=np.float32)
    atomic_write_with(
        path, lambda handle: sf.write(handle, data, sample_rate, format="WAV", subtype="PCM_16")
    )


def save_example_audio(
    out_dir: Path,
    utt_id: str,
    mix: Tensor,
    refs: Tensor,
    est_aligned: Tensor,
    sample_rate: int,
) -> Path:
    """Write ``out_dir/<safe id>/{mix, s1..sC, s1_est..sC_est}.wav`` and return that directory.

    ``est_aligned[k]`` must already be the estimate of ``refs[k]`` (PIT order), so that ``s1`` and
    ``s1_est`` are the same speaker.
    """
    if refs.shape != est_aligned.shape or refs.dim() != 2 or mix.shape[-1] != refs.shape[-1]:
        raise ValueError(
            f"utterance {utt_id!r}: expected mix [T], refs [C, T], est [C, T]; got "
            f"{tuple(mix.shape)}, {tuple(refs.shape)}, {tuple(est_aligned.shape)}"
        )
    folder = Path(out_dir) / safe_name(str(utt_id))
    signals: dict[str, np.ndarray] = {"mix": mix.detach().cpu().double().numpy()}
    for k in range(refs.shape[0]):
        signals[f"s{k + 1}"] = refs[k].detach().cpu().double().numpy()
    for k in range(est_aligned.shape[0]):
        signals[f"s{k + 1}_est"] = est_aligned[k].detach().cpu().double().numpy()
    for name, signal in signals.items():
        try:
            write_wav(folder / f"{name}.wav", _normalized(signal), sample_rate)
        except ValueError as err:
            raise ValueError(
                f"utterance {utt_id!r}: cannot save {folder / name}.wav: {err}"
            ) from err
        except (RuntimeError, OSError) as err:  # soundfile's errors, full disk, permissions
            raise OSError(f"utterance {utt_id!r}: cannot save {folder / name}.wav: {err}") from err
    return folder
