"""The unit of work between the data pipeline and the trainer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class Example:
    """One utterance as a Dataset returns it: ``mix [T]``, ``sources [C, T]``, optional ``noise [T]``."""

    id: str
    mix: Tensor
    sources: Tensor
    noise: Tensor | None = None


@dataclass
class Batch:
    """``mix [B, T]``, ``sources [B, C, T]``, optional ``noise [B, T]``, ``ids`` (B strings).

    ``lengths [B]`` holds the number of valid samples of each example when the batch was padded
    (variable-length validation/test); ``None`` means every example fills all T samples.
    """

    mix: Tensor
    sources: Tensor
    ids: list[str] = field(default_factory=list)
    noise: Tensor | None = None
    lengths: Tensor | None = None

    def __post_init__(self) -> None:
        if self.mix.dim() != 2 or self.sources.dim() != 3:
            raise ValueError(
                f"Batch: expected mix [B, T] and sources [B, C, T], got {tuple(self.mix.shape)} "
                f"and {tuple(self.sources.shape)}"
            )
        if (
            self.sources.shape[0] != self.mix.shape[0]
            or self.sources.shape[-1] != self.mix.shape[-1]
        ):
            raise ValueError(
                f"Batch: mix {tuple(self.mix.shape)} and sources {tuple(self.sources.shape)} disagree"
            )
        if not self.ids:
            self.ids = [str(i) for i in range(self.mix.shape[0])]

    def __len__(self) -> int:
        return int(self.mix.shape[0])

    @property
    def num_sources(self) -> int:
        return int(self.sources.shape[1])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device, non_blocking=non_blocking)

        return Batch(
            mix=self.mix.to(device, non_blocking=non_blocking),
            sources=self.sources.to(device, non_blocking=non_blocking),
            ids=self.ids,
            noise=move(self.noise),
            lengths=move(self.lengths),
        )

    def pin_memory(self) -> Batch:
        """Called by ``DataLoader(pin_memory=True)`` for custom batch types."""
        return Batch(
            mix=self.mix.pin_memory(),
            sources=self.sources.pin_memory(),
            ids=self.ids,
            noise=None if self.noise is None else self.noise.pin_memory(),
            lengths=None if self.lengths is None else self.lengths.pin_memory(),
        )


def collate(examples: Sequence[Example]) -> Batch:
    """Stack examples into a :class:`Batch`, zero-padding to the longest and recording lengths."""
    if not examples:
        raise ValueError("collate: empty list of examples")
    num_src = {ex.sources.shape[0] for ex in examples}
    if len(num_src) != 1:
        raise ValueError(f"collate: examples have different numbers of sources {sorted(num_src)}")
    lengths = [int(ex.mix.shape[-1]) for ex in examples]
    longest = max(lengths)
    padded = any(n != longest for n in lengths)
    B, C = len(examples), num_src.pop()
    mix = examples[0].mix.new_zeros(B, longest)
    sources = examples[0].sources.new_zeros(B, C, longest)
    has_noise = all(ex.noise is not None for ex in examples)
    noise = mix.new_zeros(B, longest) if has_noise else None
    for i, ex in enumerate(examples):
        n = lengths[i]
        mix[i, :n] = ex.mix
        sources[i, :, :n] = ex.sources
        if noise is not None and ex.noise is not None:
            noise[i, :n] = ex.noise
    return Batch(
        mix=mix,
        sources=sources,
        ids=[ex.id for ex in examples],
        noise=noise,
        lengths=torch.tensor(lengths) if padded else None,
    )
