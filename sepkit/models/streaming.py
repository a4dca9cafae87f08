"""Stateful block-by-block inference for causal models: each block's work is done once.

A causal Conv-TasNet (``causal: true``, cLN) needs, to process the next ``k`` hops of input,
only a little of its past: the last ``L - hop`` input samples (the encoder window overlaps the
previous hop), the last ``dilation * (P - 1)`` frames seen by each dilated convolution, and the
``L - hop`` output samples still waiting for the next frame's overlap-add. Everything else in
the model works frame by frame. :class:`ConvTasNetStream` keeps exactly that, in one flat state
tensor, so a block costs the same whatever came before it (no window is recomputed) and an
exported graph needs one state input and one state output.

Started from a zero state and flushed with ``L - hop`` zeros (plus what completes a hop), the
stream computes the same frames as the model's offline forward (``full_overlap`` padding in
:class:`~sepkit.models.separator.MaskingSeparator`), so its output equals the offline output
to float rounding; ``tests/models/test_streaming.py`` checks it for random block sizes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sepkit.models.conv_ops import DepthwiseConv1d
from sepkit.models.convtasnet import TCNMaskNet, TemporalBlock
from sepkit.models.norms import ChannelLayerNorm
from sepkit.models.separator import MaskingSeparator


class NotStreamableError(ValueError):
    """The model cannot run as a stateful stream; the message says why and what to use."""


def check_streamable(model: nn.Module) -> None:
    """Raise :class:`NotStreamableError` unless ``model`` is a causal Conv-TasNet."""
    hint = (
        "stateful streaming needs a causal model: convtasnet with causal: true and norm: cLN "
        "(recipes/demo-causal.yaml); for other models use chunked separation (sepkit separate)"
    )
    name = type(model).__name__
    if not isinstance(model, MaskingSeparator) or not isinstance(model.masknet, TCNMaskNet):
        raise NotStreamableError(f"{name} is not a Conv-TasNet: {hint}")
    blocks = _blocks(model.masknet)
    norms = [model.masknet.in_norm, *(n for b in blocks for n in (b.norm1, b.norm2))]
    causal = all(_dconv(b).pad_lr[1] == 0 for b in blocks)
    if not causal or not all(isinstance(n, ChannelLayerNorm) for n in norms):
        raise NotStreamableError(f"this Conv-TasNet looks at future frames: {hint}")
    window, hop = model.encoder.kernel_size, model.encoder.stride
    if not model.full_overlap or window % hop:
        raise NotStreamableError(
            f"this Conv-TasNet (L={window}, hop={hop}) was not built for streaming: {hint}"
        )


def _blocks(masknet: TCNMaskNet) -> list[TemporalBlock]:
    return [block for block in masknet.blocks if isinstance(block, TemporalBlock)]


def _dconv(block: TemporalBlock) -> DepthwiseConv1d:
    conv = block.dconv
    assert isinstance(conv, DepthwiseConv1d)
    return conv


class ConvTasNetStream(nn.Module):
    """``(audio [B, k * hop], state [B, state_size]) -> (sources [B, C, k * hop], state)``.

    Output sample ``i`` of the stream is input sample ``i - lead`` (``lead = L - hop``): the
    first ``lead`` outputs precede the signal. Shares the parameters of the model it wraps.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        check_streamable(model)
        assert isinstance(model, MaskingSeparator) and isinstance(model.masknet, TCNMaskNet)
        self.model = model
        self.masknet: TCNMaskNet = model.masknet
        self._block_list = _blocks(model.masknet)
        self.hop = model.encoder.stride
        self.window = model.encoder.kernel_size
        self.lead = self.window - self.hop
        self.num_spks = model.num_spks
        # The flat state: [encoder input tail | each block's convolution context | output tail]
        self._sizes = [self.lead]
        self._shapes: list[tuple[int, ...]] = [(self.lead,)]
        for block in self._block_list:
            shape = (_dconv(block).in_channels, _dconv(block).context)
            self._shapes.append(shape)
            self._sizes.append(shape[0] * shape[1])
        self._shapes.append((self.num_spks, self.lead))
        self._sizes.append(self.num_spks * self.lead)

    @property
    def state_size(self) -> int:
        return sum(self._sizes)

    @property
    def latency(self) -> int:
        """Algorithmic latency in samples: an input sample is in the output once the encoder
        window that ends after it is complete, ``L`` samples at most (blocks add their own)."""
        return self.window

    def initial_state(self, batch: int = 1) -> Tensor:
        weight = self.model.encoder.conv.weight
        return weight.new_zeros(batch, self.state_size)

    def forward(self, audio: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        batch = audio.shape[0]
        parts = [
            piece.reshape(batch, *shape)
            for piece, shape in zip(state.split(self._sizes, dim=1), self._shapes, strict=True)
        ]
        enc_tail, contexts, out_tail = parts[0], parts[1:-1], parts[-1]
        signal = torch.cat([enc_tail, audio], dim=1)
        frames = self.model.encoder(signal)  # [B, N, k]
        x: Tensor | None = self.masknet.bottleneck(self.masknet.in_norm(frames))
        skip_sum: Tensor | None = None
        new_contexts = []
        for block, context in zip(self._block_list, contexts, strict=True):
            assert x is not None
            seen = torch.cat([context, block.expand(x)], dim=2)
            new_contexts.append(seen[:, :, seen.shape[2] - context.shape[2] :])
            x, skip = block.finish(x, _dconv(block).valid(seen))
            skip_sum = skip if skip_sum is None else skip_sum + skip
        assert skip_sum is not None
        masks = self.masknet.masks(skip_sum)  # [B, C, N, k]
        masked = frames.unsqueeze(1) * masks
        windows = self.model.decoder(masked.flatten(0, 1)).view(batch, self.num_spks, -1)
        # k * hop + lead samples: the first lead of them complete the previous blocks' tail,
        # the last lead of them await the next block's first frames
        summed = torch.cat([windows[..., : self.lead] + out_tail, windows[..., self.lead :]], 2)
        length = audio.shape[1]
        new_state = torch.cat(
            [
                signal[:, signal.shape[1] - self.lead :],
                *(c.flatten(1) for c in new_contexts),
                summed[..., length:].flatten(1),
            ],
            dim=1,
        )
        return summed[..., :length], new_state
