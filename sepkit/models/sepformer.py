"""SepFormer (Subakan et al., 2021): dual-path transformers, compatible with SpeechBrain's.

The defaults are the published WSJ0-2mix model (``speechbrain/sepformer-wsj02mix``): encoder 256
filters of 16 samples (hop 8), chunks of 250 frames, 2 blocks of 8 intra + 8 inter pre-norm
transformer layers (d_model 256, 8 heads, FFN 1024), sinusoidal positional encodings, no linear
layer after the intra/inter transformers.

:func:`from_speechbrain` reads a SpeechBrain model-card folder into this module (see
:mod:`sepkit.models.speechbrain`), giving the same outputs as SpeechBrain's pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from sepkit.models.dual_path import DualPathBlock, DualPathMaskNet
from sepkit.models.filterbank import Decoder, Encoder
from sepkit.models.separator import MaskingSeparator
from sepkit.models.transformer import Activation, TransformerEncoder

if TYPE_CHECKING:
    pass


@dataclass
class SepFormerConfig:
    """SepFormer sizes; the defaults are the published WSJ0-2mix model's."""

    num_spks: int = 2
    N: int = 256  # encoder filters
    L: int = 16  # filter length (hop L/2)
    d_model: int = 256
    nhead: int = 8
    d_ffn: int = 1024
    num_layers: int = 8  # transformer layers in each intra and each inter model
    num_blocks: int = 2  # dual-path blocks
    chunk_size: int = 250
    norm_before: bool = True
    positional_encoding: bool = True
    activation: Activation = "relu"
    dropout: float = 0.0
    skip_around_intra: bool = True
    linear_layer_after_inter_intra: bool = False
    # False drops trailing samples that do not fill a window, as SpeechBrain does (imports).
    pad_input: bool = True

    PRESETS: ClassVar[dict[str, dict[str, object]]] = {
        "small": {
            "N": 128,
            "L": 16,
            "d_model": 128,
            "nhead": 4,
            "d_ffn": 256,
            "num_layers": 2,
            "num_blocks": 2,
            "chunk_size": 100,
        },
    }

    def validate(self) -> None:
        for name in ("num_spks", "N", "d_model", "nhead", "d_ffn", "num_layers", "num_blocks"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.L < 2:
            raise ValueError(f"L: the filter length must be >= 2 (hop L/2), got {self.L}")
        if self.d_model % self.nhead:
            raise ValueError(f"d_model: {self.d_model} is not a multiple of nhead {self.nhead}")
        if self.positional_encoding and self.d_model % 2:
            raise ValueError(f"d_model: positional encodings need it even, got {self.d_model}")
        if self.chunk_size < 2 or self.chunk_size % 2:
            raise ValueError(f"chunk_size: must be even and >= 2, got {self.chunk_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: must be in [0, 1), got {self.dropout}")


def _transformer(cfg: SepFormerConfig) -> TransformerEncoder:
    return TransformerEncoder(
        cfg.num_layers,
        cfg.d_model,
        cfg.nhead,
        cfg.d_ffn,
        dropout=cfg.dropout,
        activation=cfg.activation,
        norm_before=cfg.norm_before,
        positional_encoding=cfg.positional_encoding,
    )


def build_sepformer(cfg: SepFormerConfig) -> MaskingSeparator:
    """SepFormer as a :class:`MaskingSeparator` (``mix [B, T] -> est [B, C, T]``)."""
    blocks = [
        DualPathBlock(
            _transformer(cfg),
            _transformer(cfg),
            cfg.d_model,
            linear=cfg.linear_layer_after_inter_intra,
            skip_around_intra=cfg.skip_around_intra,
        )
        for _ in range(cfg.num_blocks)
    ]
    masknet = DualPathMaskNet(cfg.N, cfg.d_model, cfg.chunk_size, blocks, cfg.num_spks)
    return MaskingSeparator(
        Encoder(cfg.N, cfg.L), masknet, Decoder(cfg.N, cfg.L), cfg.num_spks, cfg.pad_input
    )
