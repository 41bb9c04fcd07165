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

from types import MappingProxyType

import numpy as np

from . import KERNELS, Kernel, register_kernel
from .common import PARALLEL_MACS, STACK_BUFFER_BYTES, conv_weights, phases, row_segments, valid_range
from .direct import CONV_OPS

DEPTHWISE_ROWS = 8  # output rows computed together: 8 independent accumulators cover the FMA latency
DEPTHWISE_CHANNELS = 8  # planes copied before the first is read (within STACK_BUFFER_BYTES)
DEPTHWISE_PIXELS = 8  # output pixels of a row computed together on channel-blocked tensors


def plane_shape(args: dict, lanes: int) -> tuple[int, int, int]:
    """(rows, row length per phase, bytes) of one zero-padded, phase-split channel plane."""
    oh, ow, sw = args["OH"], args["OW"], args["SW"]
    full_blocks, last_cols = divmod(ow, lanes)
    row_len = (full_blocks + (last_cols > 0)) * lanes + (args["KW"] - 1) * args["DW"] // sw + 1  # per phase
    plane_rows = (oh - 1) * args["SH"] + (args["KH"] - 1) * args["DH"] + 1  # padded input rows the taps read
    return plane_rows, row_len, 4 * plane_rows * sw * row_len


def column_loads(seg: dict, kw: int, sw: int, dw: int) -> list[dict]:
    """For a block of output pixels (a row_segments entry): each input column it reads, relative to the
    block's first tap column, once, with the (pixel, kernel column) pairs that use it."""
    uses: dict[int, list[tuple[int, int]]] = {}
    for t in range(kw):
        for j in (range(seg["n"]) if seg["mask"] is None else seg["mask"][t]):
            uses.setdefault(j * sw + t * dw, []).append((j, t))
    return [{"col": col, "uses": uses[col]} for col in sorted(uses)]


def transpose_stages(lanes: int) -> list[dict]:
    """Shuffles that transpose `lanes` vectors of `lanes` floats: per stage d (a power of 2) and pair of
    vectors (p, p + d) with p & d == 0, the lane indices (two-input __builtin_shufflevector, b at +lanes) of
    the new p and p + d: lanes i with i & d take the other vector's lane i ∓ d, so bit d of the vector index
    and of the lane index trade places; after every bit, vector l holds lane l of each input."""
    stages = []
    d = 1
    while d < lanes:
        lo = [lanes + i - d if i & d else i for i in range(lanes)]
        hi = [lanes + i if i & d else i + d for i in range(lanes)]
        stages.append({"d": d, "pairs": [p for p in range(lanes) if not p & d], "lo": lo, "hi": hi})
        d *= 2
    return stages


def plane_args(args: dict, macs: int, lanes: int) -> dict:
    """Vector path: a zero-padded, phase-split copy of each channel plane (PR rows of SW phases of RL
    columns) and DEPTHWISE_ROWS output rows at a time. Portable path: per kernel tap the rectangle of
    output pixels it reaches inside the input, with its input offset."""
    taps = []
    for kh in range(args["KH"]):
        oh_lo, oh_hi = valid_range(args["OH"], args["H"], args["SH"], kh * args["DH"] - args["PT"])
        for kw in range(args["KW"]):
            ow_lo, ow_hi = valid_range(args["OW"], args["W"], args["SW"], kw * args["DW"] - args["PL"])
            if oh_lo < oh_hi and ow_lo < ow_hi:
                offset = (kh * args["DH"] - args["PT"]) * args["W"] + kw * args["DW"] - args["PL"]
                taps.append({"kh": kh, "kw": kw, "index": kh * args["KW"] + kw, "oh_lo": oh_lo, "oh_hi": oh_hi,
                             "ow_lo": ow_lo, "ow_hi": ow_hi, "offset": offset})
    oh, ow, sw = args["OH"], args["OW"], args["SW"]
    full_blocks, last_cols = divmod(ow, lanes)
    plane_rows, row_len, plane_bytes = plane_shape(args, lanes)
    rows = min(DEPTHWISE_ROWS, oh)
    channel_block = max(1, min(DEPTHWISE_CHANNELS, STACK_BUFFER_BYTES // plane_bytes, args["C"]))
    phase_list = phases(row_len, sw, args["PL"], args["W"])
    # Stride 2: input columns 2·VL at a time split into even and odd with vector shuffles. Even columns
    # i go to phase (i + PL) % 2 at j = (i + PL) // 2, odd ones to the other phase.
    even_q, split_blocks, even_lo, odd_lo = args["PL"] % 2, 0, 0, 0
    if sw == 2:
        even, odd = phase_list[even_q], phase_list[1 - even_q]
        even_lo, odd_lo = even["lo"], odd["lo"]
        if even_lo == args["PL"] // 2 and odd_lo == (args["PL"] + 1) // 2:
            split_blocks = min(args["W"] // (2 * lanes), (even["hi"] - even_lo) // lanes,
                               (odd["hi"] - odd_lo) // lanes)
    # Split across threads from an eighth of the usual size up: the channels a thread reads are mostly the
    # ones it just wrote (templates/threads.c.j2), and on one thread half of them sit in the other core's cache.
    return dict(args, taps=taps, OHW=oh * ow, parallel=macs >= PARALLEL_MACS // 8, VL=lanes, RL=row_len,
                phases=phase_list, SPLIT_BLOCKS=split_blocks, EVEN_Q=even_q,
                EVEN_LO=even_lo, ODD_LO=odd_lo, PR=plane_rows, R=rows, CB=channel_block,
                COPY_ROWS=max(0, min(args["H"], plane_rows - args["PT"])),  # input rows inside the plane
                ROW_GROUPS=oh // rows, LAST_ROWS=oh % rows, FULL_BLOCKS=full_blocks, LAST_COLS=last_cols,
                blocked_input=False)


def blocked_args(args: dict, macs: int, lanes: int, y_lanes: int) -> dict:
    """A row's output pixels a register block at a time (DEPTHWISE_PIXELS for a blocked output; L for a C×H×W
    one, whose L×L tile is transposed before the stores); per kernel row each input column is loaded once and
    used by every tap that reads it; border blocks list only the taps inside the input (row_segments), rows
    take theirs from row_lo/row_hi. y_lanes: the output's (and a residual's) layout, L or 0 (C×H×W)."""
    c, kw = args["C"], args["KW"]
    if c % lanes:
        raise ValueError(f"channel-blocked depthwise needs C a multiple of {lanes}, got C = {c}")
    if y_lanes not in (0, lanes):
        raise ValueError(f"channel-blocked depthwise writes {lanes}-lane blocks or C×H×W, not {y_lanes} lanes")
    segments = row_segments(args["col_lo"], args["col_hi"], kw, DEPTHWISE_PIXELS if y_lanes else lanes)
    for seg in segments:
        seg["loads"] = column_loads(seg, kw, args["SW"], args["DW"])
    return dict(args, VL=lanes, CB=c // lanes, OHW=args["OH"] * args["OW"], segments=segments,
                parallel=macs >= PARALLEL_MACS // 8, YB=y_lanes, transpose=transpose_stages(lanes),
                blocked_input=True)


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
        return "ops/conv2d_depthwise_blocked.c.j2" if params["blocked_input"] else "ops/conv2d_depthwise.c.j2"

    def params(self, layer, in_shapes, out_shape, target, layouts):
        args = layer.spec.kernel_args(layer, in_shapes, out_shape)
        macs = layer.spec.macs(layer, in_shapes, out_shape)
        if layouts[0]:
            return MappingProxyType(blocked_args(args, macs, layouts[0], layouts[-1]))
        return MappingProxyType(plane_args(args, macs, target.lanes))

    def arrays(self, layer, weights, params):
        w = conv_weights(weights)
        if not params["blocked_input"]:
            return w
        lanes, (c, _, kh, kw) = params["VL"], w["weight"].shape
        packed = w["weight"].reshape(c // lanes, lanes, kh, kw).transpose(0, 2, 3, 1)  # [C/L][KH][KW][L]
        bias = w["bias"] if "bias" in w else np.zeros(c, np.float32)
        return {"weight": packed, "bias": bias}

    def uses_thread_pool(self, params):
        return True
