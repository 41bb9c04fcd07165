"""pool_blocked: max and average pools between channel-blocked tensors ([C/L][H][W][L], compiler/kernels/layouts.py;
templates/ops/pool2d_blocked.c.j2). Each window combines whole vectors of L channels, one per tap inside the
input, in the plain loops' order (window rows, then columns) and with their divisors, so every lane computes
what the C×H×W kernels compute. Items are (channel block, output row) pairs.

The C×H×W pool kernels (maxpool_interior, maxpool_padded, avgpool_interior) say they read and write either
layout, the same for both (`blocked_io`), and hand a blocked layer to this one (`refine`): a pool then no longer
sends the convs around it back to C×H×W, as it did between Inception v3's channel-blocked concats.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import KERNELS, Kernel, register_kernel
from .common import PoolParams, pool_fields, window_parallel


@dataclass(frozen=True)
class BlockedPoolParams(PoolParams):  # taps: offsets in floats, VL per pixel
    VL: int  # lanes per channel block
    VECTOR_BYTES: int
    CB: int  # channel blocks: C / VL
    INTERIOR: bool  # some windows lie inside the input: [OH_A, OH_B) × [OW_A, OW_B)
    START: str  # a window's starting value: 0.0f (sum) or -INFINITY (max)
    X_BLOCK_FLOATS: int  # floats per channel block of the input: H·W·VL
    Y_ROW_FLOATS: int  # floats per output row of one channel block: OW·VL
    ITEMS: int  # CB·OH
    parallel: bool


def blocked_pool_io(in_shapes, out_shape, target) -> tuple[str, ...] | None:
    """A pool reads and writes one layout: channel-blocked when its channels are whole vectors."""
    return ("same",) if out_shape[0] % target.lanes == 0 else None


class HandsBlockedPools:
    """Mixed into the C×H×W pool kernels: they take either layout (the same for input and output) and hand a
    pool between channel-blocked tensors to pool_blocked."""

    def blocked_io(self, layer, in_shapes, out_shape, target):
        return blocked_pool_io(in_shapes, out_shape, target)

    def refine(self, layer, in_shapes, out_shape, target, layouts) -> tuple[Kernel, str] | None:
        if layouts[0]:
            return KERNELS["pool_blocked"], "a pool between channel-blocked tensors: whole vectors of channels per tap"
        return None


@register_kernel
class BlockedPool(Kernel):
    name = "pool_blocked"
    ops = ("maxpool2d", "avgpool2d")
    template = "ops/pool2d_blocked.c.j2"
    priority = -50  # only by hand-over from the C×H×W pools (or forced): it needs channel-blocked tensors
    doc = "windows of whole channel vectors, between channel-blocked tensors"

    def wanted(self, layer, in_shapes, out_shape, target):
        return None

    def blocked_io(self, layer, in_shapes, out_shape, target):
        return blocked_pool_io(in_shapes, out_shape, target)

    def params(self, layer, in_shapes, out_shape, target, layouts):
        lanes = layouts[0]
        if not lanes or layouts[-1] != lanes or in_shapes[0][0] % lanes:
            raise ValueError(f"{layer.where}: the pool_blocked kernel reads and writes channel-blocked tensors "
                             f"only, got layouts {layouts}")
        g = pool_fields(BlockedPoolParams, layer, in_shapes, out_shape, layer.op == "avgpool2d", lanes)
        cb = g["C"] // lanes
        return BlockedPoolParams(**g, VL=lanes, VECTOR_BYTES=4 * lanes, CB=cb, INTERIOR=g["OH_A"] < g["OH_B"],
                                 START="0.0f" if g["average"] else "-INFINITY",
                                 X_BLOCK_FLOATS=g["HW"] * lanes, Y_ROW_FLOATS=g["OW"] * lanes, ITEMS=cb * g["OH"],
                                 parallel=window_parallel(g))

    def uses_thread_pool(self, params):
        return True
