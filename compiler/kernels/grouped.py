"""grouped: register-blocked grouped convolutions, 1 < groups and not depthwise (RegNet, ResNeXt: groups of
2–64 channels; templates/ops/conv2d_grouped.c.j2).

The direct kernel's scheme within each group: the innermost step multiplies a vector of VL output channels of
one group (weights packed per group [G·KBG][CG][KH][KW][VL]) by one input value of the group's CG input
channels per output pixel, for KV vectors × PB pixels of accumulators in registers. The vector is as wide
as the group allows: the target's lanes where they divide the group's KG filters, else 8 or 4 lanes (a group
of 8 on AVX-512 runs ymm vectors, a group of 4 xmm: half and a quarter of the lanes, so narrow groups reach
that part of the FMA peak at most), and a group whose KG no width divides (2, 6, 12 on AVX2 ...) is
zero-padded to whole vectors of the smallest width that holds it at most half empty. Border blocks list only the taps inside the input (no tests at run time).

Work items are (group, output row, register block of the group's filters), in that order: a thread takes
whole groups, whose input rows and weights stay in its cache. The input is read in either layout; the output
(and a residual) are written channel-blocked when every vector is whole (a vector of VL ≤ L filters of
one group lies inside one block of L channels), else C×H×W: through VL×VL tiles transposed in registers, or,
where a group's vectors are part empty, one scalar store per value.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import Kernel, register_kernel
from .common import PARALLEL_MACS, ConvParams, Offset, TransposeStage, block_shape, conv_fields, conv_weights
from .direct import CONV_OPS, PixelBlock, StoreVector, channel_unroll, narrow_wide_kernel, pixel_blocks, store_fields

NARROW_LANES = (8, 4)  # the vector widths below the target's for groups of fewer filters


@dataclass(frozen=True)
class GroupedParams(ConvParams):
    G: int  # groups
    VL: int  # output channels per vector (of one group)
    VECTOR_BYTES: int
    KBG: int  # vectors of filters per group (KG zero-padded to whole vectors)
    KB: int  # vectors of filters in all: G·KBG
    LAST_KB: int  # the last vector's index within its group
    LASTN: int  # filters in a group's last vector
    PARTIAL_LAST: bool  # LASTN < VL
    KV: int  # filter vectors per register block
    PB: int  # output pixels per register block
    BLOCKS: int  # register blocks per group: KBG / KV
    PADDED: bool  # always False: KV divides KBG
    padding_vectors: tuple[bool, ...]  # all False: KV divides KBG (the direct kernel's zero-padded last block)
    PIN_WEIGHTS: str  # "": the weights are not pinned in registers (common.pin_condition)
    ROW_ITEMS: int  # items per group: OH·BLOCKS
    filter_vectors: tuple[Offset, ...]  # per filter vector v of a block: v·CG·KH·KW (its weights' offset)
    output_vectors: tuple[Offset, ...]  # per filter vector v of a block: v·VL (its first filter's offset)
    XB: int  # the input's channel-blocked lanes (0: C×H×W)
    X_NESTED: bool  # XB and CG a multiple of it: the channel loop runs over blocks, then lanes
    CG_XBLOCKS: int  # CG / XB when X_NESTED
    X_BLOCK_FLOATS: int  # H·W·XB
    CHANNEL_UNROLL: int  # the input-channel loop's unroll factor (direct.channel_unroll; 0: GCC's choice)
    TAP_STEP: int  # floats between horizontal taps: DW · the input's pixel stride
    YB: int  # the output's (and residual's) channel-blocked lanes (0: C×H×W)
    Y_BLOCK_FLOATS: int  # OH·OW·YB
    segments: tuple[PixelBlock, ...]
    TRANSPOSE_STORE: bool  # a C×H×W output of whole vectors: VL×VL tiles transposed in registers, vector stores
    store_vectors: tuple[StoreVector, ...]
    transpose: tuple[TransposeStage, ...]
    SPLAT: bool  # the template needs convc_splat
    IVEC: bool  # and convc_ivec (a vector epilogue with an activation)
    CHUNKED: bool  # always False: the groups' weights are small (the direct kernel's cache blocking)
    ITEMS: int  # G·OH·BLOCKS
    parallel: bool


def grouped_lanes(filters_per_group: int, lanes: int) -> int:
    """The vector width for groups of `filters_per_group` filters on a target of `lanes`: the widest of the
    target's, 8 and 4 lanes that divides it, else the narrowest that holds it at most half empty."""
    widths = [lanes] + [n for n in NARROW_LANES if n < lanes]
    for width in widths:
        if filters_per_group % width == 0:
            return width
    return min((w for w in widths if 2 * filters_per_group >= w), default=widths[-1])


def balanced_block(row: int, most: int) -> int:
    """Pixels per register block for a row of `row` pixels, at most `most`: as many blocks as `most` needs, of
    equal size, so that no short last block (7 = 6 + 1) runs on too few accumulators to hide the FMA latency
    (7 = 4 + 3; 14 = 5 + 5 + 4)."""
    blocks = -(-row // most)
    return -(-row // blocks)


@register_kernel
class Grouped(Kernel):
    name = "grouped"
    ops = CONV_OPS
    template = "ops/conv2d_grouped.c.j2"
    priority = 15
    doc = "1 < groups, not depthwise: vectors of a group's output channels, register-blocked over pixels"

    def unsuitable(self, layer, in_shapes, out_shape, target):
        a, c = layer.attrs, in_shapes[0][0]
        if a.groups == 1:
            return "it computes groups > 1 only (groups = 1 is the direct kernel's)"
        if a.groups == c == a.filters:
            return "groups = C = K is depthwise (the depthwise kernel's)"
        return None

    def blocked_io(self, layer, in_shapes, out_shape, target):
        """It reads either layout; it writes a blocked output when a group's filters are whole vectors."""
        kg = layer.attrs.filters // layer.attrs.groups
        if kg % grouped_lanes(kg, target.lanes) or any(tuple(s) != tuple(out_shape) for s in in_shapes[1:]):
            return None
        return ("any",) + ("same",) * (len(in_shapes) - 1)

    def params(self, layer, in_shapes, out_shape, target, layouts):
        g = conv_fields(layer, in_shapes, out_shape)
        x_lanes, y_lanes = layouts[0], layouts[-1]
        groups, kg, cg = layer.attrs.groups, g["KG"], g["CG"]
        lanes = grouped_lanes(kg, target.lanes)
        kbg = -(-kg // lanes)
        lastn = kg - (kbg - 1) * lanes
        if y_lanes and (lastn != lanes or y_lanes % lanes):
            raise ValueError(f"{layer.where}: a channel-blocked output needs whole {lanes}-lane vectors of filters "
                             f"per group inside {y_lanes}-lane blocks, got {kg} filters per group")
        kv, pb = narrow_wide_kernel(block_shape(kbg, target.vector_registers), g["KW"])
        pb = balanced_block(g["OW"], pb)
        cgkk = cg * g["KHW"]
        pixel_stride = x_lanes or 1
        blocks = kbg // kv
        transposed = not y_lanes and lastn == lanes  # (groups narrower than a vector: a scalar store each)
        segments = pixel_blocks(g, kv, pb, pixel_stride, cgkk, store_lanes=lanes if transposed else 0)
        return GroupedParams(
            **g, G=groups, VL=lanes, VECTOR_BYTES=4 * lanes, KBG=kbg, KB=groups * kbg, LAST_KB=kbg - 1,
            LASTN=lastn, PARTIAL_LAST=lastn != lanes, KV=kv, PB=pb, BLOCKS=blocks, ROW_ITEMS=g["OH"] * blocks,
            PADDED=False, padding_vectors=(False,) * kv, PIN_WEIGHTS="",
            filter_vectors=tuple(Offset(v, v * cgkk) for v in range(kv)),
            output_vectors=tuple(Offset(v, v * lanes) for v in range(kv)),
            XB=x_lanes, X_NESTED=bool(x_lanes) and cg % x_lanes == 0, CG_XBLOCKS=cg // x_lanes if x_lanes else 0,
            X_BLOCK_FLOATS=g["HW"] * x_lanes,
            CHANNEL_UNROLL=channel_unroll(g["KHW"], x_lanes, kv * pb + kv + 1, False, target),
            TAP_STEP=g["DW"] * pixel_stride,
            YB=y_lanes, Y_BLOCK_FLOATS=g["OHW"] * y_lanes, segments=segments,
            **store_fields(transposed, y_lanes, g["activation"], kv, lanes, g["OHW"], lastn), CHUNKED=False,
            ITEMS=groups * g["OH"] * blocks,
            parallel=layer.spec.macs(layer, in_shapes, out_shape) >= PARALLEL_MACS)

    def arrays(self, layer, weights, params):
        """Weights [G·KBG][CG][KH][KW][VL] and bias [G·KBG][VL]: each group's filters zero-padded to KBG vectors."""
        w = conv_weights(weights)
        k, cg, kh, kw = w["weight"].shape
        groups, kgp = params.G, params.KBG * params.VL
        kg = k // groups
        padded = np.zeros((groups, kgp, cg, kh, kw), np.float32)
        padded[:, :kg] = w["weight"].reshape(groups, kg, cg, kh, kw)
        packed = padded.reshape(groups * params.KBG, params.VL, cg, kh, kw).transpose(0, 2, 3, 4, 1)
        bias = np.zeros((groups, kgp), np.float32)
        if "bias" in w:
            bias[:, :kg] = w["bias"].reshape(groups, kg)
        return {"weight": np.ascontiguousarray(packed), "bias": bias.reshape(-1)}

    def uses_thread_pool(self, params):
        return True
