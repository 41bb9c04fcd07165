"""lrn: local response normalization across channels (ONNX LRN, torch.nn.LocalResponseNorm for odd sizes)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import register
from .base import Op, attr, c_float, int_at_least, parse_float, parse_positive_float


@dataclass(frozen=True)
class LrnAttrs:
    size: int = attr(int_at_least(1), doc="channels in the window")
    alpha: float = attr(parse_float, 1e-4, doc="scale of the sum of squares (divided by size)")
    beta: float = attr(parse_float, 0.75, doc="exponent")
    bias: float = attr(parse_positive_float, 1.0, doc="added before the power, > 0 (k in torch)")


@register
class Lrn(Op):
    name = "lrn"
    per_sample = True
    onnx_types = ("LRN",)
    Attrs = LrnAttrs
    template = "ops/lrn.c.j2"
    doc = ("local response normalization across channels: y = x / (bias + alpha/size · Σ x[c′]²)^beta, "
           "the sum over channels c′ ∈ [c − ⌊(size−1)/2⌋, c + ⌈(size−1)/2⌉] clipped to the input "
           "(axis 1), as ONNX LRN; torch.nn.LocalResponseNorm is the same for odd sizes (for even "
           "sizes torch's window starts one channel earlier); inputs of any rank")

    def windows(self, layer, channels: int) -> tuple[list[int], list[int]]:
        """Per channel c, the channels [lo, hi) summed."""
        before, after = (layer.attrs.size - 1) // 2, layer.attrs.size // 2
        lo = [max(0, c - before) for c in range(channels)]
        hi = [min(channels, c + after + 1) for c in range(channels)]
        return lo, hi

    def infer_shape(self, layer, in_shapes):
        return in_shapes[0]

    def macs(self, layer, in_shapes, out_shape):
        return int(np.prod(out_shape)) * (layer.attrs.size + 1)

    def reference(self, layer, inputs, weights):
        x, a = inputs[0], layer.attrs
        squares = x * x
        lo, hi = self.windows(layer, x.shape[1])
        sums = np.stack([squares[:, l:h].sum(axis=1) for l, h in zip(lo, hi)], axis=1)
        return x / (a.bias + a.alpha / a.size * sums) ** a.beta

    def kernel_args(self, layer, in_shapes, out_shape):
        a = layer.attrs
        lo, hi = self.windows(layer, out_shape[0])
        return {"C": out_shape[0], "inner": int(np.prod(out_shape[1:], dtype=np.int64)), "lo": lo, "hi": hi,
                "bias": c_float(a.bias), "alpha_over_size": c_float(a.alpha / a.size), "beta": c_float(a.beta)}
