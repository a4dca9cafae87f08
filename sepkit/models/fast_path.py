"""When a model may swap a stock ATen op for one of sepkit's hand-written CPU kernels.

One predicate for all of them (``transformer.linear``, ``conv_ops``): the kernels are written
and checked for CPU float32 only, autocast must keep choosing the op's dtype, and
``torch.compile`` must see the stock op it knows how to fuse.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor


def fast_conv_ops_enabled() -> bool:
    """``SEPKIT_FAST_CONV_OPS=0`` turns the convolution kernels off (``conv_ops``, the decoder's
    overlap-add), for a side-by-side benchmark or to rule them out when chasing a numerical
    difference."""
    return _stock_only == 0 and os.environ.get("SEPKIT_FAST_CONV_OPS", "1") != "0"


_stock_only = 0


@contextmanager
def stock_ops_only() -> Iterator[None]:
    """Use the stock ATen ops inside this block: what an exporter (ONNX) can translate, since
    the hand-written kernels are autograd Functions it knows nothing of."""
    global _stock_only
    _stock_only += 1
    try:
        yield
    finally:
        _stock_only -= 1


def cpu_fast_path(*tensors: Tensor | None) -> bool:
    """Whether a hand-written CPU float32 kernel may replace the stock op for these tensors."""
    return (
        _stock_only == 0
        and all(t is None or (t.device.type == "cpu" and t.dtype == torch.float32) for t in tensors)
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
    )
