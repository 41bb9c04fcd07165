"""softmax over the channel axis (dim=1 of NCHW, or the features of a flat tensor)."""
import numpy as np

from . import register
from .base import Op


@register
class Softmax(Op):
    name = "softmax"
    template = "ops/softmax.c.j2"
    doc = "exp(x) / Σ exp(x) over channels (torch.softmax(x, dim=1))"

    def infer_shape(self, layer, in_shapes):
        return in_shapes[0]

    def reference(self, layer, inputs, weights):
        x = inputs[0]
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def kernel_args(self, layer, in_shapes, out_shape):
        # Channels are `C` rows of `inner` contiguous values each.
        c = out_shape[0]
        return {"C": c, "inner": int(np.prod(out_shape[1:], dtype=np.int64))}
