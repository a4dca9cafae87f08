"""eSpeak NG speech synthesis into memory, for the built-in demo corpus.

Why ctypes on the ``espeakng-loader`` wheel: it ships ``libespeak-ng.so`` and its voice data, so
``pip install espeakng-loader`` is all a machine needs (no system package, no network at run time).
The library is driven in synchronous mode with a callback that appends the 16-bit samples to a list,
which avoids one subprocess and one WAV file per utterance. If the wheel cannot be loaded, an
``espeak-ng`` binary on ``PATH`` is used instead (``--stdout`` WAV). The library keeps global state,
so it is initialised once per process; every worker process initialises its own copy.
"""

from __future__ import annotations

import ctypes
import io
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

#: eSpeak NG's native output rate (Hz); the generator resamples from it.
NATIVE_RATE = 22050

INSTALL_HINT = (
    "install the eSpeak NG wheel with `pip install espeakng-loader` (or `pip install "
    "'sepkit[demo]'`), or a system espeak-ng (`apt-get install espeak-ng`)"
)

# espeak_AUDIO_OUTPUT, espeak_PARAMETER and flag values from speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_RATE, _ESPEAK_VOLUME, _ESPEAK_PITCH, _ESPEAK_RANGE = 1, 2, 3, 4
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_SSML = 0x10
_ENDPAUSE = 0x1000

_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class SynthError(RuntimeError):
    """eSpeak NG is unavailable or refused a voice or a text."""


@dataclass(frozen=True)
class Voice:
    """What eSpeak needs to speak one utterance: ``language+variant`` and prosody settings.

    ``rate`` is in words per minute (eSpeak's 80–450), ``pitch`` and ``pitch_range`` on eSpeak's
    0–100 scale, relative to the variant's own base pitch.
    """

    language: str
    variant: str
    rate: int = 175
    pitch: int = 50
    pitch_range: int = 50

    @property
    def name(self) -> str:
        return f"{self.language}+{self.variant}" if self.variant else self.language


class _LibraryBackend:
    """The shared library, loaded and initialised once per process."""

    def __init__(self, library: str, data_path: str) -> None:
        self.lib = ctypes.CDLL(library)
        lib = self.lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        # eSpeak accepts either the espeak-ng-data folder itself or its parent.
        rate = -1
        for candidate in (data_path, str(Path(data_path).parent)):
            rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, candidate.encode(), 0)
            if rate > 0:
                break
        if rate <= 0:
            raise SynthError(f"espeak_Initialize failed with voice data at {data_path}")
        if rate != NATIVE_RATE:
            raise SynthError(f"eSpeak NG reports {rate} Hz output, expected {NATIVE_RATE}")
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # keep a reference: C holds only the pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._lock = threading.Lock()

    def _collect(self, wav: ctypes.Array, num: int, _events: int) -> int:
        if num > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num,)).copy())
        return 0

    def synthesize(self, ssml: str, voice: Voice) -> np.ndarray:
        with self._lock:
            if self.lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
                raise SynthError(f"eSpeak NG has no voice {voice.name!r}")
            self.lib.espeak_SetParameter(_ESPEAK_RATE, voice.rate, 0)
            self.lib.espeak_SetParameter(_ESPEAK_PITCH, voice.pitch, 0)
            self.lib.espeak_SetParameter(_ESPEAK_RANGE, voice.pitch_range, 0)
            self.lib.espeak_SetParameter(_ESPEAK_VOLUME, 100, 0)
            text = ssml.encode("utf-8") + b"\0"
            self._chunks = []
            err = self.lib.espeak_Synth(
                text, len(text), 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _SSML, None, None
            )
            if err != 0:
                raise SynthError(f"espeak_Synth failed (error {err}) for voice {voice.name!r}")
            chunks, self._chunks = self._chunks, []
        if not chunks:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(chunks).astype(np.int16, copy=False)


class _BinaryBackend:
    """Fallback: the ``espeak-ng`` command-line program writing a WAV to stdout."""

    def __init__(self, binary: str) -> None:
        self.binary = binary

    def synthesize(self, ssml: str, voice: Voice) -> np.ndarray:
        cmd = [
            self.binary,
            "-m",
            "--stdout",
            "-v",
            voice.name,
            "-s",
            str(voice.rate),
            "-p",
            str(voice.pitch),
            ssml,
        ]
        proc = subprocess.run(cmd, capture_output=True, check=False)
        if proc.returncode != 0:
            msg = proc.stderr.decode(errors="replace").strip()
            raise SynthError(f"{self.binary} failed for voice {voice.name!r}: {msg}")
        data, rate = sf.read(io.BytesIO(proc.stdout), dtype="int16")
        if rate != NATIVE_RATE:
            raise SynthError(f"{self.binary} wrote {rate} Hz audio, expected {NATIVE_RATE}")
        return np.asarray(data, dtype=np.int16).reshape(-1)


_BACKEND: _LibraryBackend | _BinaryBackend | None = None


def _load_backend() -> _LibraryBackend | _BinaryBackend:
    errors: list[str] = []
    try:
        import espeakng_loader

        return _LibraryBackend(
            str(espeakng_loader.get_library_path()), str(espeakng_loader.get_data_path())
        )
    except (ImportError, OSError, AttributeError, SynthError) as err:
        errors.append(f"espeakng-loader wheel: {err}")
    binary = shutil.which("espeak-ng")
    if binary:
        return _BinaryBackend(binary)
    errors.append("no `espeak-ng` program on PATH")
    raise SynthError(
        "cannot synthesize speech: " + "; ".join(errors) + f". To fix it, {INSTALL_HINT}."
    )


def backend() -> _LibraryBackend | _BinaryBackend:
    """The process's synthesizer, created on first use (a forked child inherits it)."""
    global _BACKEND
    if _BACKEND is None:
        _BACKEND = _load_backend()
    return _BACKEND


def synthesize(ssml: str, voice: Voice) -> np.ndarray:
    """Speak ``ssml`` (an SSML document, e.g. with ``<break time="300ms"/>``) as int16 at 22.05 kHz."""
    return backend().synthesize(ssml, voice)


def data_path() -> Path | None:
    """The eSpeak NG voice data folder of the wheel, if installed (used to list variants)."""
    try:
        import espeakng_loader
    except ImportError:
        return None
    return Path(espeakng_loader.get_data_path())
