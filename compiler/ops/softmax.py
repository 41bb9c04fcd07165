"""softmax over one per-sample axis (default 0: the channels, dim=1 of NCHW, or the features of a flat tensor)."""
from dataclasses import dataclass

import numpy as np

from . import register
from .base import Op, attr, parse_int, resolve_axis


@dataclass(frozen=True)
class SoftmaxAttrs:
    axis: int = attr(parse_int, 0, doc="per-sample axis to normalize over: 0 = channels (negative counts from the end)")


@register
class Softmax(Op):
    name = "softmax"
    onnx_types = ("Softmax",)
    Attrs = SoftmaxAttrs
    template = "ops/softmax.c.j2"
    doc = ("exp(x) / Σ exp(x) along one per-sample axis; inputs of any rank "
           "(axis 0: torch.softmax(x, dim=1); per-sample axis a is torch's dim a + 1)")

    def infer_shape(self, layer, in_shapes):
        resolve_axis(layer, "axis", layer.attrs.axis, in_shapes[0])
        return in_shapes[0]

    def reference(self, layer, inputs, weights):
        x = inputs[0]
        axis = resolve_axis(layer, "axis", layer.attrs.axis, x.shape[1:]) + 1
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)

    def kernel_args(self, layer, in_shapes, out_shape):
        # `outer` blocks, each `C` rows (the softmax axis) of `inner` contiguous values.
        axis = resolve_axis(layer, "axis", layer.attrs.axis, out_shape)
        c, inner = out_shape[axis], int(np.prod(out_shape[axis + 1:], dtype=np.int64))
        return {"outer": int(np.prod(out_shape[:axis], dtype=np.int64)), "C": c, "inner": inner, "block": c * inner}
