"""Pools split into interior and frame (templates/ops/pool2d_split.c.j2), at opt level 2: avgpool_interior for
average pools, maxpool_padded for max pools whose windows reach the padding (or past the input with ceil_mode)
or overlap at a stride (3×3/2: the row maxima below); maxpool_interior takes the others with every window inside.

The windows that lie inside the input (all but a frame one or two outputs wide) combine their KH·KW taps
literally (a sum divided by KH·KW, or a maximum) in one loop over each output row's interior columns that
vectorizes. The frame's rows are combined in place per window column over the literal range of output columns
whose tap lies inside; its columns in the interior rows are literal combinations of their taps. When an output
row is as long as an input row and both strides are 1 (a "same" pool, as Inception's and GoogLeNet's 3×3/1),
the output index maps to the input index by one shift, so the interior rows are one flat loop over the plane
(long, whatever the row width), whose values in the frame columns are then overwritten. Sums add the taps in
the plain loops' order (window rows, then columns) and divide by the same counts. Channels split across threads.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import KERNELS, Kernel, register_kernel
from .blocked_pool import HandsBlockedPools
from .common import STACK_BUFFER_BYTES, ColumnTap, PoolParams, column_taps, pool_fields, window_parallel


@dataclass(frozen=True)
class FrameColumn:
    """Output column ow outside the interior, in an interior row: its taps as offsets from the window row
    start's input row (ih0·W), and its divisor (average pools)."""
    ow: int
    taps: tuple[int, ...]
    divisor: int


@dataclass(frozen=True)
class SplitPoolParams(PoolParams):
    OHW: int
    flat: bool  # the interior rows as one loop over output indices P_A..P_B-1, reading input index p + SHIFT + tap
    row_max: bool  # max pool, strided: per interior row the window rows' maximum per input column first
    row_taps: tuple[int, ...]  # (row_max) the window rows' offsets: i·DH·W
    col_taps_in_row: tuple[int, ...]  # (row_max) the window columns' offsets: j·DW
    P_A: int
    P_B: int
    SHIFT: int
    col_taps: tuple[ColumnTap, ...]  # the frame rows: per window column, the output columns whose tap is inside
    frame_cols: tuple[FrameColumn, ...]  # the frame columns of the interior rows
    parallel: bool


def split_pool_params(layer, in_shapes, out_shape, average: bool) -> SplitPoolParams:
    g = pool_fields(SplitPoolParams, layer, in_shapes, out_shape, average)
    oh_a, oh_b, ow_a, ow_b = g["OH_A"], g["OH_B"], g["OW_A"], g["OW_B"]
    flat = g["SH"] == g["SW"] == 1 and g["OW"] == g["W"] and oh_a < oh_b
    # A strided max pool reads each input value in KW windows' columns: the window rows' maximum per column
    # (contiguous, vectorized) first leaves KW strided reads per output instead of KH·KW. (Sums keep the plain
    # loops' order of addition instead.)
    row_max = not average and not flat and oh_a < oh_b and g["SW"] > 1 and 4 * g["W"] <= STACK_BUFFER_BYTES
    frame_cols = tuple(
        FrameColumn(ow, tuple(i * g["DH"] * g["W"] + ow * g["SW"] - g["PL"] + j * g["DW"]
                              for i in range(g["KH"]) for j in range(g["col_lo"][ow], g["col_hi"][ow])),
                    g["KH"] * g["col_div"][ow])
        for ow in range(g["OW"]) if not ow_a <= ow < ow_b) if oh_a < oh_b else ()
    return SplitPoolParams(**g, OHW=g["OH"] * g["OW"], flat=flat, row_max=row_max,
                           row_taps=tuple(i * g["DH"] * g["W"] for i in range(g["KH"])),
                           col_taps_in_row=tuple(j * g["DW"] for j in range(g["KW"])),
                           P_A=oh_a * g["OW"] + ow_a, P_B=(oh_b - 1) * g["OW"] + ow_b,
                           SHIFT=-g["PT"] * g["W"] - g["PL"], col_taps=column_taps(g),
                           frame_cols=frame_cols, parallel=window_parallel(g))


@register_kernel
class AvgPoolInterior(HandsBlockedPools, Kernel):
    name = "avgpool_interior"
    ops = ("avgpool2d",)
    template = "ops/pool2d_split.c.j2"
    priority = 10
    doc = "interior windows as literal sums vectorized over columns, the frame apart"

    def params(self, layer, in_shapes, out_shape, target, layouts):
        return split_pool_params(layer, in_shapes, out_shape, average=True)

    def uses_thread_pool(self, params):
        return True


@register_kernel
class MaxPoolPadded(HandsBlockedPools, Kernel):
    name = "maxpool_padded"
    ops = ("maxpool2d",)
    template = "ops/pool2d_split.c.j2"
    priority = 10

    def wanted(self, layer, in_shapes, out_shape, target):
        if KERNELS["maxpool_interior"].unsuitable(layer, in_shapes, out_shape, target) is None:
            return "overlapping strided windows: each interior row's window-row maxima first"
        return "windows reach the padding: interior windows literal, the frame apart"

    def params(self, layer, in_shapes, out_shape, target, layouts):
        return split_pool_params(layer, in_shapes, out_shape, average=False)

    def uses_thread_pool(self, params):
        return True
