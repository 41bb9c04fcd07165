"""vector: dense layers at opt level 2, the plain loop vectorized over the inputs and, when large, threaded
over the units (templates/ops/dense.c.j2)."""
from __future__ import annotations

from dataclasses import dataclass

from . import Kernel, register_kernel
from .common import PARALLEL_MACS


@dataclass(frozen=True)
class DenseParams:
    IN: int  # input features
    OUT: int  # units
    has_bias: bool
    residual: bool
    activation: tuple  # compiler.ops.fused.ActivationStep
    simd: bool  # the inner loop is `omp simd` (a reduction)
    parallel: bool  # units split across threads


@register_kernel
class DenseVector(Kernel):
    name = "dense_vector"
    ops = ("dense", "fused_dense")
    template = "ops/dense.c.j2"
    priority = 10
    doc = "the dense loop vectorized over the inputs"

    def params(self, layer, in_shapes, out_shape, target, layouts):
        args = layer.spec.kernel_args(layer, in_shapes, out_shape)
        return DenseParams(args["IN"], args["OUT"], args["has_bias"], args["residual"], args["activation"], simd=True,
                           parallel=layer.spec.macs(layer, in_shapes, out_shape) >= PARALLEL_MACS)

    def uses_thread_pool(self, params):
        return params.parallel
