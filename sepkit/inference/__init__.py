"""Separating recordings with a trained model.

``streaming``: the chunked overlap-add algorithm (speaker order, sign, edges; memory bounded by
one chunk); ``realtime``: live, stateful block-by-block separation with a causal model; ``files``: reading, resampling and writing files block by block; ``loading``: finding
and rebuilding a trained model; ``separator``: the high-level :class:`Separator`; ``common``:
defaults and :class:`InputError`. The command line (``sepkit separate``) is in
:mod:`sepkit.cli.separate`.

Exports resolve lazily, so the command line's parser can read :mod:`sepkit.inference.common`
without importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sepkit.inference.common import InputError
    from sepkit.inference.files import separate_file, separate_files
    from sepkit.inference.loading import resolve_checkpoint
    from sepkit.inference.realtime import LiveSeparator
    from sepkit.inference.separator import Separator
    from sepkit.inference.streaming import StreamingSeparator, separate_waveform

_EXPORTS = {
    "InputError": "sepkit.inference.common",
    "LiveSeparator": "sepkit.inference.realtime",
    "Separator": "sepkit.inference.separator",
    "StreamingSeparator": "sepkit.inference.streaming",
    "resolve_checkpoint": "sepkit.inference.loading",
    "separate_file": "sepkit.inference.files",
    "separate_files": "sepkit.inference.files",
    "separate_waveform": "sepkit.inference.streaming",
}
__all__ = [
    "InputError",
    "LiveSeparator",
    "Separator",
    "StreamingSeparator",
    "resolve_checkpoint",
    "separate_file",
    "separate_files",
    "separate_waveform",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sepkit.inference' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
