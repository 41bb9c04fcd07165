"""softmax over one axis (default 1: the channels of N×C×H×W, or the features of N×F), as torch.softmax's dim."""
from dataclasses import dataclass

import numpy as np

from . import register
from .base import Op, attr, parse_int, resolve_axis


@dataclass(frozen=True)
class SoftmaxAttrs:
    axis: int = attr(parse_int, 1, doc="the axis to normalize over, as torch's dim: 1 = channels (0 is the batch; "
                                        "negative counts from the end)")


@register
class Softmax(Op):
    name = "softmax"
    onnx_types = ("Softmax",)
    Attrs = SoftmaxAttrs
    template = "ops/softmax.c.j2"
    doc = "exp(x) / Σ exp(x) along one axis, as torch.softmax(x, dim=axis); inputs of any rank"

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
