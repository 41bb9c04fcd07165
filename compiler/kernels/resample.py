"""upsample_channels: upsample at opt level 2, the op's own loops (templates/ops/upsample.c.j2) with channels
split across threads. A segmentation head's last upsample writes the whole output image (21 classes × H × W);
run on one thread it was a quarter of LR-ASPP's time at 224×224 with 2 threads."""
from __future__ import annotations

from types import MappingProxyType

from . import Kernel, register_kernel
from .common import PARALLEL_MACS


@register_kernel
class UpsampleChannels(Kernel):
    name = "upsample_channels"
    ops = ("upsample",)
    priority = 10
    doc = "the upsample loops with channels split across threads"

    def template_for(self, layer, params) -> str:
        return layer.spec.template

    def params(self, layer, in_shapes, out_shape, target, layouts):
        args = layer.spec.kernel_args(layer, in_shapes, out_shape)
        taps = args["taps"] * args["taps"]
        return MappingProxyType(dict(args, parallel=args["C"] > 1 and args["C"] * args["OHW"] * taps >= PARALLEL_MACS))

    def uses_thread_pool(self, params):
        return params["parallel"]
