"""DPRNN (Luo, Chen & Yoshioka, 2020): dual-path BLSTMs over chunks of the encoded frames.

The defaults are the paper's best WSJ0-2mix configuration (2-sample filters, 64 channels,
128 hidden units per direction, chunks of 250 frames, 6 blocks); the mask head is
SpeechBrain's (gated output, ReLU masks), shared with SepFormer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

from sepkit.models.dual_path import DualPathBlock, DualPathMaskNet
from sepkit.models.filterbank import Decoder, Encoder
from sepkit.models.separator import MaskingSeparator


@dataclass
class DPRNNConfig:
    """DPRNN sizes; the defaults are the paper's published configuration."""

    num_spks: int = 2
    N: int = 64  # encoder filters
    L: int = 2  # filter length (hop L/2)
    d_model: int = 64  # bottleneck width inside the dual-path blocks
    hidden: int = 128  # LSTM units per direction
    chunk_size: int = 250
    num_blocks: int = 6
    dropout: float = 0.0
    pad_input: bool = True

    PRESETS: ClassVar[dict[str, dict[str, object]]] = {
        "small": {
            "N": 64,
            "L": 16,
            "d_model": 64,
            "hidden": 64,
            "chunk_size": 100,
            "num_blocks": 3,
        },
    }

    def validate(self) -> None:
        for name in ("num_spks", "N", "d_model", "hidden", "num_blocks"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.L < 2:
            raise ValueError(f"L: the filter length must be >= 2 (hop L/2), got {self.L}")
        if self.chunk_size < 2 or self.chunk_size % 2:
            raise ValueError(f"chunk_size: must be even and >= 2, got {self.chunk_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: must be in [0, 1), got {self.dropout}")


class BLSTM(nn.Module):
    """Bidirectional LSTM ``[batch, time, D] -> [batch, time, 2 * hidden]``."""

    def __init__(self, d_model: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.lstm = nn.LSTM(d_model, hidden, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.out_features = 2 * hidden

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.lstm(x)[0])


def build_dprnn(cfg: DPRNNConfig) -> MaskingSeparator:
    """DPRNN as a :class:`MaskingSeparator` (``mix [B, T] -> est [B, C, T]``)."""
    blocks = [
        DualPathBlock(
            BLSTM(cfg.d_model, cfg.hidden, cfg.dropout),
            BLSTM(cfg.d_model, cfg.hidden, cfg.dropout),
            cfg.d_model,
            linear=True,
        )
        for _ in range(cfg.num_blocks)
    ]
    masknet = DualPathMaskNet(cfg.N, cfg.d_model, cfg.chunk_size, blocks, cfg.num_spks)
    return MaskingSeparator(
        Encoder(cfg.N, cfg.L), masknet, Decoder(cfg.N, cfg.L), cfg.num_spks, cfg.pad_input
    )
