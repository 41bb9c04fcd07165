"""vector: dense layers at opt level 2, the plain loop vectorized over the inputs and, when large, threaded
over the units (templates/ops/dense.c.j2)."""
from __future__ import annotations

from types import MappingProxyType

from . import Kernel, register_kernel

PARALLEL_DENSE_MACS = 1 << 20


@register_kernel
class DenseVector(Kernel):
    name = "dense_vector"
    ops = ("dense", "fused_dense")
    template = "ops/dense.c.j2"
    priority = 10
    doc = "the dense loop vectorized over the inputs"

    def params(self, layer, in_shapes, out_shape, target, layouts):
        args = layer.spec.kernel_args(layer, in_shapes, out_shape)
        return MappingProxyType(dict(args, simd=True,
                                     parallel=layer.spec.macs(layer, in_shapes, out_shape) >= PARALLEL_DENSE_MACS))

    def uses_thread_pool(self, params):
        return params["parallel"]
