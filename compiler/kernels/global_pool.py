"""global_pool: the global pools at opt level 2, reading either layout (their C×1×1 output is the same memory in
both); a channel-blocked input sums a block's channels side by side (templates/ops/global_avgpool.c.j2,
global_maxpool.c.j2)."""
from __future__ import annotations

from types import MappingProxyType

from . import Kernel, register_kernel


@register_kernel
class GlobalPool(Kernel):
    name = "global_pool"
    ops = ("global_avgpool", "global_maxpool")
    priority = 10
    doc = "global pool reading C×H×W or channel-blocked input"

    def blocked_io(self, layer, in_shapes, out_shape, target):
        return ("any",)

    def template_for(self, layer, params):
        return layer.spec.template

    def params(self, layer, in_shapes, out_shape, target, layouts):
        args = layer.spec.kernel_args(layer, in_shapes, out_shape)
        lanes = layouts[0]
        return MappingProxyType(dict(args, XB=lanes, CB=args["C"] // lanes if lanes else 0))
