"""Global pooling: C×H×W -> C×1×1 (torch's adaptive pools with output size 1)."""
from . import register
from .base import Op, check_rank


class _GlobalPool(Op):
    per_sample = True
    def infer_shape(self, layer, in_shapes):
        check_rank(layer, in_shapes, 3)
        return (in_shapes[0][0], 1, 1)

    def window(self, layer, in_shapes):
        return "global"

    def formula(self, layer, in_shapes, out_shape):
        _, h, w = in_shapes[0]
        return f"{h}×{w} -> 1×1"

    def kernel_args(self, layer, in_shapes, out_shape):
        c, h, w = in_shapes[0]
        # the plain loops: C×H×W input, one thread (compiler/kernels/global_pool.py sets these per target)
        return {"C": c, "HW": h * w, "XB": 0, "X_BLOCK_FLOATS": 0, "ITEMS": c, "simd": False,
                "parallel": False}


@register
class GlobalAvgPool(_GlobalPool):
    name = "global_avgpool"
    onnx_types = ("GlobalAveragePool",)
    template = "ops/global_avgpool.c.j2"
    doc = "mean over H×W per channel"

    def reference(self, layer, inputs, weights):
        return inputs[0].mean(axis=(2, 3), keepdims=True)


@register
class GlobalMaxPool(_GlobalPool):
    name = "global_maxpool"
    onnx_types = ("GlobalMaxPool",)
    template = "ops/global_maxpool.c.j2"
    doc = "max over H×W per channel"

    def reference(self, layer, inputs, weights):
        return inputs[0].max(axis=(2, 3), keepdims=True)
