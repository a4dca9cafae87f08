"""Make SpeechBrain importable in the benchmarks when torchaudio is absent.

SpeechBrain 1.1 imports ``torchaudio`` at package import time (and checks its version) but the
code the benchmarks use (losses, ``dual_path``, ``Brain``) never calls it. torchaudio cannot be
installed beside torch 2.13, so importing this module registers an empty stand-in ``torchaudio``
in ``sys.modules`` -- only when the real one is missing, and only inside the bench process.
Its "torchaudio is old" warnings are silenced too.

    import speechbrain_shim  # noqa: F401  (before importing speechbrain)
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import types

STAND_IN = importlib.util.find_spec("torchaudio") is None and "torchaudio" not in sys.modules

if STAND_IN:
    _module = types.ModuleType("torchaudio")
    _module.__version__ = "0.0.0"  # type: ignore[attr-defined]
    sys.modules["torchaudio"] = _module


class _DropTorchaudioNotes(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "torchaudio" not in record.getMessage()


for _name in ("speechbrain", "speechbrain.utils.torch_audio_backend"):
    logging.getLogger(_name).addFilter(_DropTorchaudioNotes())
