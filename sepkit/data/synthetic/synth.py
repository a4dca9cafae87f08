"""eSpeak NG speech synthesis into memory, for the built-in demo corpus.

Why ctypes on the ``espeakng-loader`` wheel: it ships ``libespeak-ng.so`` and its voice data, so
``pip install espeakng-loader`` is all a machine needs (no system package, no network at run time).
The library is driven in synchronous mode with a callback that appends the 16-bit samples to a list,
which avoids one subprocess and one WAV file per utterance. If the wheel cannot be loaded, an
``espeak-ng`` binary on ``PATH`` is used instead (``--stdout`` WAV). The library keeps global state,
so it is initialised once per process; every worker process initialises its own copy.

Edited voices (``Voice.formant_scale`` and the other edits) are eSpeak variant files that sepkit writes: eSpeak
only reads variants from its data folder, so the library is pointed at a mirror of the wheel's
folder (symbolic links, plus the generated variants) kept in the user's cache directory.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import os
import shutil
import subprocess
import tempfile
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
    0–100 scale, relative to the variant's own base pitch. The rest edits the variant into a new
    timbre (all at their defaults = the variant as published): ``formant_scale`` multiplies every
    formant frequency (a shorter or longer vocal tract), ``formant_factors`` and
    ``height_factors`` multiply formant 0, 1, ... 's frequency and height one by one, and
    ``pitch_hz`` replaces the variant's base pitch range (Hz, low and high).
    """

    language: str
    variant: str
    rate: int = 175
    pitch: int = 50
    pitch_range: int = 50
    formant_scale: float = 1.0
    formant_factors: tuple[float, ...] = ()
    height_factors: tuple[float, ...] = ()
    pitch_hz: tuple[int, int] | None = None

    @property
    def shifted(self) -> bool:
        """Whether the variant is edited (spoken from a generated variant file)."""
        return (
            round(self.formant_scale, 3) != 1.0
            or bool(self.formant_factors or self.height_factors)
            or self.pitch_hz is not None
        )

    @property
    def edits(self) -> str:
        """The edits, spelled out ("" for the published variant): names the generated file and
        the cached utterances. A voice that is only formant-scaled keeps its corpus-v2 spelling."""
        if not self.shifted:
            return ""
        text = f"formant_scale={round(self.formant_scale, 3)}"
        if self.formant_factors or self.height_factors or self.pitch_hz is not None:
            text += f", formants={self.formant_factors}, heights={self.height_factors}"
            text += f", pitch_hz={self.pitch_hz}"
        return text

    @property
    def variant_name(self) -> str:
        """The eSpeak variant to load: the published one, or sepkit's edited copy of it."""
        if not self.shifted:
            return self.variant
        # Short (eSpeak's name buffers are small) and unique per variant and edits; a voice that
        # is only formant-scaled keeps the key (hence the file name) it had before other edits.
        if self.formant_factors or self.height_factors or self.pitch_hz is not None:
            key = f"{self.variant}|{self.edits}"
        else:
            key = f"{self.variant}|{round(self.formant_scale, 3)}"
        return "v" + hashlib.sha1(key.encode()).hexdigest()[:8]

    @property
    def name(self) -> str:
        """What ``espeak_SetVoiceByName`` takes. eSpeak reads a variant from
        ``voices/!v/<variant>``; generated ones live beside ``voices/`` (see ``GENERATED``)."""
        if not self.variant:
            return self.language
        if self.shifted:
            return f"{self.language}+../../{GENERATED}/{self.variant_name}"
        return f"{self.language}+{self.variant}"


#: Folder of the data mirror holding generated variants. Not under ``voices/``: eSpeak scans that
#: tree into a voice list of at most 349 entries, and a few hundred generated variants there
#: pushed the language voices (``en-us`` …) out of it, so they silently fell back to the default.
GENERATED = "sk"
#: Longest ``language+variant`` name eSpeak NG 1.52 takes (one more byte aborts the process
#: with a buffer overflow), less a safety byte.
_MAX_VOICE_NAME = 34
#: eSpeak's formant numbers run 0..8; a variant file line is ``formant N freq% height% width%``.
_N_FORMANTS = 9


def scaled_variant(text: str, scale: float) -> str:
    """A variant file's text with every formant frequency multiplied by ``scale``."""
    return edited_variant(text, Voice("", "", formant_scale=scale))


def edited_variant(text: str, voice: Voice) -> str:
    """A variant file's text with ``voice``'s edits applied (see :class:`Voice`).

    Formants the file does not mention are at eSpeak's default (100 % frequency, height and
    width); they are written out so that they change too. Widths and all other settings are kept.
    """

    def factor(factors: tuple[float, ...], n: int) -> float:
        return factors[n] if n < len(factors) else 1.0

    def edit(n: int, freq: float, height: float) -> tuple[int, int]:
        freq *= voice.formant_scale * factor(voice.formant_factors, n)
        return max(1, round(freq)), max(0, round(height * factor(voice.height_factors, n)))

    seen: set[int] = set()
    lines = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "formant" and parts[1].isdigit():
            n = int(parts[1])
            seen.add(n)
            if len(parts) == 3:  # height and width at eSpeak's default
                parts += ["100", "100"]
            freq, height = edit(n, float(parts[2]), float(parts[3]))
            parts[2], parts[3] = str(freq), str(height)
            line = " ".join(parts)
        elif parts and parts[0] == "pitch" and voice.pitch_hz is not None:
            continue
        lines.append(line)
    for n in range(_N_FORMANTS):
        if n not in seen:
            freq, height = edit(n, 100.0, 100.0)
            lines.append(f"formant {n} {freq} {height} 100")
    if voice.pitch_hz is not None:
        lines.append(f"pitch {voice.pitch_hz[0]} {voice.pitch_hz[1]}")
    return "\n".join(lines) + "\n"


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sepkit"


def _mirror_data(data_path: str) -> Path:
    """A writable copy of eSpeak's data folder made of symbolic links, for generated variants.

    Kept per data folder in the user's cache (a temporary directory when that is not writable),
    built under a temporary name and renamed into place so concurrent processes agree on it.
    """
    source = Path(data_path).resolve()
    # A reinstalled wheel (new modification time) gets a fresh mirror.
    stamp = f"{source}|{(source / 'voices' / '!v').stat().st_mtime_ns}"
    key = hashlib.sha1(stamp.encode()).hexdigest()[:12]
    for root in (_cache_root(), Path(tempfile.gettempdir()) / f"sepkit-{os.getuid()}"):
        mirror = root / f"espeak-ng-data-{key}" / "espeak-ng-data"
        if (mirror / "voices" / "!v").is_dir():
            return mirror
        staging: Path | None = None
        try:
            mirror.parent.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=mirror.parent.parent))
            built = staging / "espeak-ng-data"
            built.mkdir()
            for entry in source.iterdir():
                if entry.name != "voices":
                    (built / entry.name).symlink_to(entry)
            (built / "voices").mkdir()
            for entry in (source / "voices").iterdir():
                if entry.name != "!v":
                    (built / "voices" / entry.name).symlink_to(entry)
            (built / "voices" / "!v").mkdir()
            for entry in (source / "voices" / "!v").iterdir():
                (built / "voices" / "!v" / entry.name).symlink_to(entry)
            try:
                staging.rename(mirror.parent)
                staging = None
            except OSError:  # another process won the race: use its mirror
                pass
            if (mirror / "voices" / "!v").is_dir():
                return mirror
        except OSError:
            continue
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
    raise SynthError(f"cannot create a writable mirror of eSpeak's voice data ({source})")


def _ensure_variant(mirror: Path, voice: Voice) -> None:
    """Write ``voice``'s formant-scaled variant file into the mirror if it is not there yet.

    It must exist before eSpeak is asked for it: a missing variant is not an error to eSpeak,
    which speaks with its default voice instead.
    """
    if len(voice.name) > _MAX_VOICE_NAME:
        raise SynthError(f"voice name too long for eSpeak NG: {voice.name!r}")
    target = mirror / GENERATED / voice.variant_name
    if target.exists():
        return
    target.parent.mkdir(exist_ok=True)
    original = mirror / "voices" / "!v" / voice.variant
    if not original.exists():
        raise SynthError(f"eSpeak NG has no voice variant {voice.variant!r}")
    text = edited_variant(original.read_text(encoding="utf-8"), voice)
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)


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
        # Through the mirror when it can be made (formant-scaled voices need it); the published
        # voices sound the same either way, the mirror's files being links to the originals.
        try:
            self.data: Path | None = _mirror_data(data_path)
        except SynthError:
            self.data = None
        root = str(self.data) if self.data is not None else data_path
        rate = -1
        for candidate in (root, str(Path(root).parent)):
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
            if voice.shifted:
                if self.data is None:
                    raise SynthError(
                        f"voice {voice.name}: no writable place for a formant-scaled variant "
                        f"(tried {_cache_root()} and {tempfile.gettempdir()})"
                    )
                _ensure_variant(self.data, voice)
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
        if voice.shifted:
            raise SynthError(
                f"voice {voice.name}: formant-scaled voices need the eSpeak NG library, not the "
                "espeak-ng program; install it with `pip install espeakng-loader`"
            )
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
