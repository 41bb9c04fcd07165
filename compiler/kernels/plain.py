"""plain: every op's own template (templates/ops/<op>.c.j2), plain loops with every bound a literal.

It computes every op (ops = ()) at every opt level, so it takes whatever layer the faster kernels leave.
"""
from __future__ import annotations

from types import MappingProxyType

from . import KERNELS, Kernel, register_kernel


@register_kernel
class Plain(Kernel):
    name = "plain"
    ops = ()  # every op
    priority = -100
    opt_level = 0
    doc = "the op's plain loops"

    def unsuitable(self, layer, in_shapes, out_shape, target):
        return None if layer.spec.template else f"op {layer.op} has no kernel"

    def template_for(self, layer, params) -> str:
        return layer.spec.template

    def params(self, layer, in_shapes, out_shape, target, layouts):
        if any(layouts):
            raise ValueError(f"{layer.where}: the plain kernel reads and writes C×H×W only")
        return MappingProxyType(layer.spec.kernel_args(layer, in_shapes, out_shape))


class HandsCHWToPlain:
    """Mixed into the kernels for channel-blocked tensors that also take the op's C×H×W layers at level 2
    (batchnorm_blocked, elementwise_blocked): where the layouts leave a layer C×H×W, the op's loops take it."""

    def refine(self, layer, in_shapes, out_shape, target, layouts):
        if not layouts[-1]:
            return KERNELS["plain"], "C×H×W: the op's plain loops"
        return None
