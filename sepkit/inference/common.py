"""What every part of separation shares and the command line may import without torch:
defaults, the input normalisation level and :class:`InputError`."""

from __future__ import annotations

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


def overlap_fits(chunk: float, overlap: float) -> bool:
    """The one chunking rule: an overlap of at most half a chunk (the cross-fade uses the middle
    half of the overlap, and consecutive overlaps must not meet). Seconds or samples alike."""
    return 0 <= overlap <= chunk / 2


class InputError(RuntimeError):
    """An input of ``separate`` cannot be used: a recording (the message names the file) or an
    option value (the message names the option). The CLI prints it as one ``sepkit: error:``."""
