"""depthwise: groups = C = K convolutions, per channel.

- C×H×W input (templates/ops/conv2d_depthwise.c.j2): the channel's input is copied into a plane zero-padded
  on every side and split by column phase (the stride), so each tap of a vector of VL output columns is one
  vector load and no loop needs a bounds test; 8 output rows are computed together, 8 independent
  accumulators that hide the multiply-add latency. A plane too big for the stack budget takes the plain kernel.
- channel-blocked input [C/L][H][W][L] (templates/ops/conv2d_depthwise_blocked.c.j2): one vector holds a pixel
  of L channels, so every lane is used whatever the map's width; it writes a blocked output, or transposes
  its L×L tiles of pixels × channels in registers to write C×H×W.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import KERNELS, Kernel, register_kernel
from .common import (PARALLEL_MACS, STACK_BUFFER_BYTES, ConvParams, Offset, Phase, PixelRun, conv_fields,
                     TransposeStage, conv_weights, phases, row_segments, transpose_stages, valid_range)
from .direct import CONV_OPS

DEPTHWISE_ROWS = 8  # output rows computed together: 8 independent accumulators cover the FMA latency
DEPTHWISE_CHANNELS = 8  # planes copied before the first is read (within STACK_BUFFER_BYTES)
DEPTHWISE_PIXELS = 8  # output pixels of a row computed together on channel-blocked tensors


@dataclass(frozen=True)
class PlaneTap:
    """Kernel tap (kh, kw) in the padded plane: its weight `index`, the plane row it adds to the output row's
    (kh·DH), and its column phase and shift ((kw·DW) mod / div SW)."""
    index: int
    row: int
    phase: int
    shift: int


@dataclass(frozen=True)
class TapRectangle:
    """Portable path: tap (kh, kw) reaches output rows oh_lo..oh_last and columns ow_lo..ow_last inside the input;
    its input offset from the output pixel's is `offset`."""
    kh: int
    kw: int
    index: int
    oh_lo: int
    oh_hi: int
    oh_last: int
    ow_lo: int
    ow_hi: int
    ow_last: int
    offset: int


@dataclass(frozen=True)
class DepthwisePlaneParams(ConvParams):
    VL: int
    VECTOR_BYTES: int
    plane_taps: tuple[PlaneTap, ...]
    taps: tuple[TapRectangle, ...]
    ROW_STEP: int  # input floats between output rows: SH·W
    RL: int  # plane columns per phase
    PR: int  # plane rows
    phases: tuple[Phase, ...]
    UNIT_STRIDE: bool
    CB: int  # planes copied before the first is read
    COPY_ROWS: int  # input rows inside the plane
    SPLIT_BLOCKS: int  # stride 2: blocks of 2·VL input columns split into even and odd by vector shuffles
    SPLIT_COLS: int  # plane columns per phase the shuffles fill: VL·SPLIT_BLOCKS
    SPLIT_LAST_COL: int
    SPLIT_STEP: int  # 2·VL
    EVEN_Q: int  # the phase of the even input columns
    ODD_Q: int
    EVEN_LO: int
    ODD_LO: int
    even_lanes: tuple[int, ...]  # 0, 2, 4, ...: the shuffle that takes the even lanes of two vectors
    odd_lanes: tuple[int, ...]
    R: int  # output rows computed together
    ROW_GROUPS: int
    ROW_GROUP_LOOP: bool  # ROW_GROUPS > 1
    ONE_ROW_GROUP: bool
    GROUPED_ROWS: int  # ROW_GROUPS·R
    LAST_ROWS: int
    LAST_OH: int
    FULL_BLOCKS: int  # whole vectors of output columns
    FULL_BLOCK_LOOP: bool
    ONE_FULL_BLOCK: bool
    FULL_COLS: int
    LAST_COLS: int  # columns in a last, partial vector
    LAST_OW: int
    parallel: bool


@dataclass(frozen=True)
class TapUse:
    pixel: int
    tap: int


@dataclass(frozen=True)
class ColumnLoad:
    """An input column a block of pixels reads once (offset in floats from the block's first tap column) and
    the (pixel, kernel column) pairs that use it."""
    offset: int
    uses: tuple[TapUse, ...]


@dataclass(frozen=True)
class BlockedSegment(PixelRun):
    """border: only the taps inside are listed; partial: n when less than a vector (C×H×W output)."""
    border: bool
    partial: int
    loads: tuple[ColumnLoad, ...]


@dataclass(frozen=True)
class DepthwiseBlockedParams(ConvParams):
    VL: int
    VECTOR_BYTES: int
    CB: int  # blocks of VL channels
    X_BLOCK_FLOATS: int  # H·W·VL
    Y_BLOCK_FLOATS: int  # OH·OW·VL
    YB: int  # the output's (and residual's) layout: VL, or 0 for C×H×W
    segments: tuple[BlockedSegment, ...]
    channel_planes: tuple[Offset, ...]  # C×H×W output: per lane l its plane's offset l·OH·OW
    transpose: tuple[TransposeStage, ...]
    parallel: bool


def plane_shape(args: dict, lanes: int) -> tuple[int, int, int]:
    """(rows, row length per phase, bytes) of one zero-padded, phase-split channel plane."""
    oh, ow, sw = args["OH"], args["OW"], args["SW"]
    full_blocks, last_cols = divmod(ow, lanes)
    row_len = (full_blocks + (last_cols > 0)) * lanes + (args["KW"] - 1) * args["DW"] // sw + 1  # per phase
    plane_rows = (oh - 1) * args["SH"] + (args["KH"] - 1) * args["DH"] + 1  # padded input rows the taps read
    return plane_rows, row_len, 4 * plane_rows * sw * row_len


def column_loads(n: int, mask: list | None, kw: int, sw: int, dw: int, lanes: int) -> tuple[ColumnLoad, ...]:
    """For a block of n output pixels (a row_segments run and mask): each input column it reads, relative to
    the block's first tap column, once, with the (pixel, kernel column) pairs that use it."""
    uses: dict[int, list[TapUse]] = {}
    for t in range(kw):
        for j in (range(n) if mask is None else mask[t]):
            uses.setdefault(j * sw + t * dw, []).append(TapUse(j, t))
    return tuple(ColumnLoad(col * lanes, tuple(uses[col])) for col in sorted(uses))


def plane_params(layer, in_shapes, out_shape, lanes: int) -> DepthwisePlaneParams:
    """Vector path: a zero-padded, phase-split copy of each channel plane (PR rows of SW phases of RL
    columns) and DEPTHWISE_ROWS output rows at a time. Portable path: per kernel tap the rectangle of
    output pixels it reaches inside the input, with its input offset."""
    g = conv_fields(layer, in_shapes, out_shape)
    taps = []
    for kh in range(g["KH"]):
        oh_lo, oh_hi = valid_range(g["OH"], g["H"], g["SH"], kh * g["DH"] - g["PT"])
        for kw in range(g["KW"]):
            ow_lo, ow_hi = valid_range(g["OW"], g["W"], g["SW"], kw * g["DW"] - g["PL"])
            if oh_lo < oh_hi and ow_lo < ow_hi:
                offset = (kh * g["DH"] - g["PT"]) * g["W"] + kw * g["DW"] - g["PL"]
                taps.append(TapRectangle(kh, kw, kh * g["KW"] + kw, oh_lo, oh_hi, oh_hi - 1, ow_lo, ow_hi, ow_hi - 1,
                                         offset))
    oh, ow, sw = g["OH"], g["OW"], g["SW"]
    full_blocks, last_cols = divmod(ow, lanes)
    plane_rows, row_len, plane_bytes = plane_shape(g, lanes)
    rows = min(DEPTHWISE_ROWS, oh)
    channel_block = max(1, min(DEPTHWISE_CHANNELS, STACK_BUFFER_BYTES // plane_bytes, g["C"]))
    phase_list = phases(row_len, sw, g["PL"], g["W"])
    # Stride 2: input columns 2·VL at a time split into even and odd with vector shuffles. Even columns
    # i go to phase (i + PL) % 2 at j = (i + PL) // 2, odd ones to the other phase.
    even_q, split_blocks, even_lo, odd_lo = g["PL"] % 2, 0, 0, 0
    if sw == 2:
        even, odd = phase_list[even_q], phase_list[1 - even_q]
        even_lo, odd_lo = even.lo, odd.lo
        if even_lo == g["PL"] // 2 and odd_lo == (g["PL"] + 1) // 2:
            split_blocks = min(g["W"] // (2 * lanes), (even.hi - even_lo) // lanes, (odd.hi - odd_lo) // lanes)
    row_groups = oh // rows
    macs = layer.spec.macs(layer, in_shapes, out_shape)
    # Split across threads from an eighth of the usual size up: the channels a thread reads are mostly the
    # ones it just wrote (templates/threads.c.j2), and on one thread half of them sit in the other core's cache.
    return DepthwisePlaneParams(
        **g, VL=lanes, VECTOR_BYTES=4 * lanes,
        plane_taps=tuple(PlaneTap(kh * g["KW"] + kw, kh * g["DH"], kw * g["DW"] % sw, kw * g["DW"] // sw)
                         for kh in range(g["KH"]) for kw in range(g["KW"])),
        taps=tuple(taps), ROW_STEP=g["SH"] * g["W"], RL=row_len, PR=plane_rows, phases=phase_list,
        UNIT_STRIDE=sw == 1, CB=channel_block,
        COPY_ROWS=max(0, min(g["H"], plane_rows - g["PT"])),  # input rows inside the plane
        SPLIT_BLOCKS=split_blocks, SPLIT_COLS=lanes * split_blocks, SPLIT_LAST_COL=2 * lanes * split_blocks - 1,
        SPLIT_STEP=2 * lanes, EVEN_Q=even_q, ODD_Q=1 - even_q, EVEN_LO=even_lo, ODD_LO=odd_lo,
        even_lanes=tuple(2 * i for i in range(lanes)), odd_lanes=tuple(2 * i + 1 for i in range(lanes)),
        R=rows, ROW_GROUPS=row_groups, ROW_GROUP_LOOP=row_groups > 1, ONE_ROW_GROUP=row_groups == 1,
        GROUPED_ROWS=row_groups * rows, LAST_ROWS=oh % rows, LAST_OH=oh - 1,
        FULL_BLOCKS=full_blocks, FULL_BLOCK_LOOP=full_blocks > 1, ONE_FULL_BLOCK=full_blocks == 1,
        FULL_COLS=full_blocks * lanes, LAST_COLS=last_cols, LAST_OW=ow - 1,
        parallel=macs >= PARALLEL_MACS // 8)


def blocked_params(layer, in_shapes, out_shape, lanes: int, y_lanes: int) -> DepthwiseBlockedParams:
    """A row's output pixels a register block at a time (DEPTHWISE_PIXELS for a blocked output; L for a C×H×W
    one, whose L×L tile is transposed before the stores); per kernel row each input column is loaded once and
    used by every tap that reads it; border blocks list only the taps inside the input (row_segments), rows
    take theirs from row_lo/row_hi. y_lanes: the output's (and a residual's) layout, L or 0 (C×H×W)."""
    g = conv_fields(layer, in_shapes, out_shape)
    c, kw = g["C"], g["KW"]
    if c % lanes:
        raise ValueError(f"channel-blocked depthwise needs C a multiple of {lanes}, got C = {c}")
    if y_lanes not in (0, lanes):
        raise ValueError(f"channel-blocked depthwise writes {lanes}-lane blocks or C×H×W, not {y_lanes} lanes")
    segments = []
    for run, mask in row_segments(g["col_lo"], g["col_hi"], kw, DEPTHWISE_PIXELS if y_lanes else lanes):
        n = run["n"]
        segments.append(BlockedSegment(**run, border=mask is not None, partial=n if n != lanes else 0,
                                       loads=column_loads(n, mask, kw, g["SW"], g["DW"], lanes)))
    macs = layer.spec.macs(layer, in_shapes, out_shape)
    return DepthwiseBlockedParams(
        **g, VL=lanes, VECTOR_BYTES=4 * lanes, CB=c // lanes, X_BLOCK_FLOATS=g["HW"] * lanes,
        Y_BLOCK_FLOATS=g["OHW"] * lanes, YB=y_lanes, segments=tuple(segments),
        channel_planes=tuple(Offset(l, l * g["OHW"]) for l in range(lanes)), transpose=transpose_stages(lanes),
        parallel=macs >= PARALLEL_MACS // 8)


@register_kernel
class Depthwise(Kernel):
    name = "depthwise"
    ops = CONV_OPS
    priority = 10

    def unsuitable(self, layer, in_shapes, out_shape, target):
        a, c = layer.attrs, in_shapes[0][0]
        if not a.groups == c == a.filters:
            return f"it computes groups = C = K only; this layer has groups = {a.groups}, C = {c}, K = {a.filters}"
        return None

    def blocked_io(self, layer, in_shapes, out_shape, target):
        """A blocked output only from a blocked input (which it can also turn into a C×H×W output)."""
        if any(tuple(s) != tuple(out_shape) for s in in_shapes[1:]):
            return None
        return ("for_out",) + ("same",) * (len(in_shapes) - 1)

    def refine(self, layer, in_shapes, out_shape, target, layouts):
        if layouts[0]:
            return None
        args = layer.spec.kernel_args(layer, in_shapes, out_shape)
        plane_bytes = plane_shape(args, target.lanes)[2]
        if plane_bytes > STACK_BUFFER_BYTES:
            return KERNELS["plain"], (f"a C×H×W input plane of {plane_bytes} bytes would not fit the depthwise "
                                      f"kernel's stack budget ({STACK_BUFFER_BYTES})")
        return None

    def template_for(self, layer, params):
        if isinstance(params, DepthwiseBlockedParams):
            return "ops/conv2d_depthwise_blocked.c.j2"
        return "ops/conv2d_depthwise.c.j2"

    def params(self, layer, in_shapes, out_shape, target, layouts):
        if layouts[0]:
            return blocked_params(layer, in_shapes, out_shape, layouts[0], layouts[-1])
        return plane_params(layer, in_shapes, out_shape, target.lanes)

    def arrays(self, layer, weights, params):
        w = conv_weights(weights)
        if not isinstance(params, DepthwiseBlockedParams):
            return w
        lanes, (c, _, kh, kw) = params.VL, w["weight"].shape
        packed = w["weight"].reshape(c // lanes, lanes, kh, kw).transpose(0, 2, 3, 1)  # [C/L][KH][KW][L]
        bias = w["bias"] if "bias" in w else np.zeros(c, np.float32)
        return {"weight": packed, "bias": bias}

    def uses_thread_pool(self, params):
        return True
