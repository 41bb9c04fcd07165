"""global_pool: the global pools at opt level 2, reading either layout (their C×1×1 output is the same memory in
both); a channel-blocked input sums a block's channels side by side (templates/ops/global_avgpool.c.j2,
global_maxpool.c.j2)."""
from __future__ import annotations

from dataclasses import dataclass

from . import Kernel, register_kernel
from .common import PARALLEL_READS

PARTIALS = 4  # partial sums per lane in the average pool: four adds in flight instead of one chain


@dataclass(frozen=True)
class GlobalPoolParams:
    C: int
    HW: int
    XB: int  # the input's channel-blocked lanes (0: C×H×W)
    CB: int  # blocks of XB channels
    X_BLOCK_FLOATS: int  # H·W·XB
    PARTIALS: int  # partial sums per lane (average pool, blocked input)
    HW_MAIN: int  # pixels summed PARTIALS at a time; the rest go to the first partial sum
    ITEMS: int  # channel blocks (or channels): the thread pool's items
    simd: bool  # the C×H×W sums are `omp simd` reductions
    parallel: bool  # the items split across threads


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
        c, h, w = in_shapes[0]
        lanes = layouts[0]
        return GlobalPoolParams(c, h * w, lanes, c // lanes if lanes else 0, h * w * lanes, PARTIALS,
                                h * w // PARTIALS * PARTIALS, ITEMS=c // lanes if lanes else c, simd=True,
                                parallel=c * h * w >= PARALLEL_READS)

    def uses_thread_pool(self, params):
        return params.parallel
