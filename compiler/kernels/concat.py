"""concat: the concat op's template (templates/ops/concat.c.j2) at opt level 2, in either layout.

A channel concat of channel-blocked tensors ([C/L][H][W][L]) whose parts are whole blocks (every input's
channels a multiple of L) puts each input at the same offset, C_before·H·W floats, as in C×H×W: one contiguous
part per input, the same copies, and the same parts computed in place (compiler/memory.py). So it reads and
writes either layout, the same for all its tensors: Inception v3's concats stay channel-blocked between the
direct convs that write and read them instead of sending them all back to C×H×W.
"""
from __future__ import annotations

from types import MappingProxyType

from . import Kernel, register_kernel


@register_kernel
class Concat(Kernel):
    name = "concat"
    ops = ("concat",)
    template = "ops/concat.c.j2"
    priority = 10
    doc = "each input one contiguous part of the output"

    def blocked_io(self, layer, in_shapes, out_shape, target):
        channel_axis = len(out_shape) == 3 and layer.spec.axis(layer, in_shapes) == 0
        if not channel_axis or any(s[0] % target.lanes for s in in_shapes):
            return None
        return ("same",) * len(in_shapes)

    def params(self, layer, in_shapes, out_shape, target, layouts):
        if any(layouts) and self.blocked_io(layer, in_shapes, out_shape, target) is None:
            raise ValueError(f"{layer.where}: a concat of channel-blocked tensors needs whole blocks of channels")
        return MappingProxyType(layer.spec.kernel_args(layer, in_shapes, out_shape))
