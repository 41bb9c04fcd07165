"""winograd: Winograd F(2×2, 3×3) for 3×3, stride 1, dilation 1, groups 1 convolutions
(templates/ops/conv2d_winograd.c.j2).

Each 2×2 block of outputs ("tile") comes from a 4×4 input patch d:  Y = Aᵀ [U ⊙ V] A  with
V = Bᵀ d B (per input channel) and U = G g Gᵀ (per filter, at compile time), and the ⊙ summed
over the input channels: 16 small matrix products, 16·C multiply-adds per tile and filter instead
of the 36·C of the direct kernel (2.25× fewer).

Kernel shape (templates/ops/conv2d_winograd.c.j2): one work item is R rows of tiles. It first
transforms its input patches into its own part of the layer's scratch, laid out [16][C][R][XW]
(tile column tw at tw; the input rows are split into even and odd columns first, so the column
transform runs on whole vectors of 16 tiles); from a channel-blocked input, on vectors of XL channels of
one tile instead, into [16][R][XW][C],
then for each pair of output-channel vectors and each register block of tiles accumulates the 16
products over C in registers (like the blocked kernel), and turns them into outputs with Aᵀ M A.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..target import Target
from . import Kernel, register_kernel
from .common import PARALLEL_MACS, ConvParams, Offset, conv_fields, conv_weights
from .direct import CONV_OPS
from .rowvec import ROWVEC_MAX_CHANNELS

# Transform matrices (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2015).
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)
BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)

MIN_CHANNELS = ROWVEC_MAX_CHANNELS + 1  # fewer input channels: the row-vector kernel
PAD_ROW_FLOATS = 1024  # split input rows per chunk of channels: enough that their stores drain before reuse
MAX_ROW = 512  # input/output row length limit: the kernel keeps split input rows (≥ 1 channel) on the stack
# Cost model, in cycles; fitted to per-layer times of ResNet-18 and CIFAR VGG on the AVX-512 machine
# (one 16-lane FMA per cycle), each term measured by leaving the others out.
DIRECT_EFFICIENCY = 0.93  # the blocked kernel runs at ~93% of the FMA peak (one vector FMA per cycle)
DIRECT_ONE_VECTOR_SLOWDOWN = 1.5  # ... and at ~62% with an odd number of filter vectors (one per register block)
GEMM_EFFICIENCY = 0.75  # the products' share of the peak with ≥ 8 accumulators (more loads per FMA than direct)
TRANSFORM_CYCLES = 6.0  # per input channel, tile row and vector of tiles: split row copies, Bᵀ d B, 16 stores
OUTPUT_CYCLES = 6.0  # per output value: Aᵀ M A share, bias, residual, activation, scattered store
# The stream term's L3 bytes per cycle, by vector lanes: 24 fitted on the AVX-512 machine (Zen 4), 36 an empirical
# fit for 8-lane vectors on an AVX2-only Zen 3 (1 thread, per layer in alternating rounds): with 24 the model gave
# the direct kernel AlexNet's 192 -> 384 and 256 -> 256 3×3s at 13×13 and SqueezeNet's 13×13 expand 3×3s (the
# two costs within 1%), which Winograd runs in 0.86-0.95 of its time. These five are the only layers of the 24
# zoo models whose kernel changes, with 36 or with 48 (with 30 SqueezeNet's stay direct).
L3_BYTES_PER_CYCLE = {16: 24.0, 8: 36.0}
# At batch 1 a model's weights outgrow the caches and each layer's arrive from L3 or memory on every call; U is
# 16/9 of the 3×3 weights. Bytes per cycle by vector lanes. 8: fitted in-model on an AVX2 Zen 3, where the same
# 7×7 layer ran 1.6× (Winograd) and 1.4× (direct) its standalone time; without the term the model gave Winograd
# DenseNet-121's 7×7 layers and GoogLeNet's 5a/5b ones, 1.5-2× slower than direct there. 16: fitted on the
# AVX-512 machine (Zen 4) against 145 Winograd-eligible layers of 11 zoo models timed in-model with both kernels
# (any rate from 3 to 6 chose alike); with 2 it gave the direct kernel AlexNet's 13×13 layers, 1.3× slower.
COLD_WEIGHT_BYTES_PER_CYCLE = {16: 4.0, 8: 2.0}
MAX_WEIGHT_BYTES = 8 << 20  # beyond this the transformed weights come from memory: keep the direct kernel


def why_not_eligible(attrs, c: int, args: dict) -> str | None:
    if attrs.groups != 1 or attrs.kernel != (3, 3) or attrs.stride != (1, 1) or attrs.dilation != (1, 1):
        return "it computes 3×3, stride-1, undilated convolutions with groups = 1 only"
    if c < MIN_CHANNELS:
        return f"it needs at least {MIN_CHANNELS} input channels (this layer has {c})"
    if max(args["W"], args["OW"]) > MAX_ROW:
        return f"its rows are limited to {MAX_ROW} columns (this layer's are {max(args['W'], args['OW'])})"
    return None


@dataclass(frozen=True)
class Plan:
    """Integers of one layer's Winograd kernel."""
    lanes: int  # VL: output channels per vector
    k_blocks: int  # KB: vectors of output channels (K zero-padded)
    kv: int  # output-channel vectors per register block
    tile_rows: int  # TH
    tile_cols: int  # TW
    rows_per_item: int  # R
    row_width: int  # XW: tile columns per tile row in the scratch (TW rounded up to whole vectors)
    blocks: tuple[tuple[tuple[int, int], ...], ...]  # per register block of an item: its (row, tile column)s

    @property
    def items(self) -> int:
        return -(-self.tile_rows // self.rows_per_item)

    def xi_stride(self, c: int) -> int:
        """Floats between the 16 planes of an item's V: [C][R][XW] plus one cache line, so the planes
        fall in different cache sets (a power-of-two stride makes the 16 streams evict each other)."""
        return c * self.rows_per_item * self.row_width + self.lanes

    def item_floats(self, c: int) -> int:  # scratch per item: V [16][C][R][XW], planes padded
        return 16 * self.xi_stride(c)


def equal_blocks(tw: int, nt: int) -> list[int]:
    """tw tiles cut into register blocks of at most nt tiles, as equal as possible."""
    n = -(-tw // nt)
    return [tw // n + (1 if i < tw % n else 0) for i in range(n)]


def plan(args: dict, c: int, k: int, target: Target) -> Plan:
    lanes = target.lanes
    k_blocks = -(-k // lanes)
    kv = 2 if k_blocks % 2 == 0 else 1
    nt = target.vector_registers * 3 // 4 // kv  # KV·NT accumulators: 24 of 32 vector registers, 12 of 16
    th, tw = -(-args["OH"] // 2), -(-args["OW"] // 2)
    if tw >= nt // 2 or th == 1:
        rows = 1
    else:  # short rows: several tile rows per block; the fewest padding rows, then the biggest block
        rows = max(range(1, min(th, nt // tw) + 1), key=lambda r: (-(-(-th // r) * r - th), r))
    if rows == 1:
        blocks, start = [], 0
        for n in equal_blocks(tw, nt):
            blocks.append(tuple((0, start + j) for j in range(n)))
            start += n
    else:
        blocks = [tuple((r, j) for r in range(rows) for j in range(tw))]
    row_width = -(-tw // lanes) * lanes
    return Plan(lanes, k_blocks, kv, th, tw, rows, row_width, tuple(blocks))


def direct_cycles(lanes: int, kv: int, c: int, k: int, args: dict) -> float:
    """Cycles per sample of the direct kernel on the same layer, for the Winograd kernels' cost models. It
    computes whole vectors of filters (24 filters on 16 lanes cost 32)."""
    filters = -(-k // lanes) * lanes
    direct = filters * args["OH"] * args["OW"] * c * 9 / (lanes * DIRECT_EFFICIENCY)
    if kv == 1:  # the direct kernel's register blocks have the same shape (common.block_shape)
        direct *= DIRECT_ONE_VECTOR_SLOWDOWN
    return direct


def predicted_cycles(p: Plan, c: int, k: int, args: dict, target: Target) -> tuple[float, float]:
    """(direct, winograd) cycles per sample from the cost model above."""
    direct = direct_cycles(p.lanes, p.kv, c, k, args)
    gemm = 0.0
    for b in p.blocks:  # vector FMAs; small blocks cannot hide the FMA latency (8 independent chains)
        fmas = 16 * c * len(b) * p.k_blocks
        gemm += fmas / GEMM_EFFICIENCY / min(1.0, p.kv * len(b) / 8)
    gemm *= p.items
    transform = c * p.items * p.rows_per_item * (p.row_width // p.lanes + 1) * TRANSFORM_CYCLES
    output = k * args["OH"] * args["OW"] * OUTPUT_CYCLES
    u_bytes = weight_bytes(c, k, p.lanes)
    # transformed weights beyond 3/4 of L2 are re-read from L3 once per register block
    l3_bytes_per_cycle = L3_BYTES_PER_CYCLE.get(p.lanes, L3_BYTES_PER_CYCLE[16])
    stream = u_bytes * p.items * len(p.blocks) / l3_bytes_per_cycle if u_bytes > target.l2_bytes * 3 // 4 else 0.0
    return direct, gemm + transform + output + stream + cold_weight_cycles(c, k, p.lanes)


def cold_weight_cycles(c: int, k: int, lanes: int) -> float:
    """What fetching U costs beyond the direct kernel's 3×3 weights, once per call: in a model, each layer's
    weights arrive from L3 or memory."""
    rate = COLD_WEIGHT_BYTES_PER_CYCLE.get(lanes, COLD_WEIGHT_BYTES_PER_CYCLE[16])
    return max(0, weight_bytes(c, k, lanes) - 4 * 9 * c * k) / rate


def weight_bytes(c: int, k: int, lanes: int) -> int:
    return 16 * c * -(-k // lanes) * lanes * 4


def scratch_floats(p: Plan, c: int) -> int:
    return p.items * p.item_floats(c)


def transform_weights(weight: np.ndarray, lanes: int) -> tuple[np.ndarray, int]:
    """U = G g Gᵀ in float64, packed [16][K/VL][C][VL] (filters zero-padded to whole vectors), as float32."""
    k, c = weight.shape[:2]
    k_blocks = -(-k // lanes)
    u = np.einsum("ia,kcab,jb->ijkc", G, weight.astype(np.float64), G).reshape(16, k, c)
    packed = np.zeros((16, k_blocks * lanes, c), np.float64)
    packed[:, :k] = u
    packed = packed.reshape(16, k_blocks, lanes, c).transpose(0, 1, 3, 2)
    return np.ascontiguousarray(packed, np.float32), k_blocks


def winograd_arrays(weights: dict[str, np.ndarray], lanes: int) -> dict[str, np.ndarray]:
    """The transformed weights and the bias zero-padded to whole vectors."""
    w = conv_weights(weights)
    packed, k_blocks = transform_weights(w["weight"], lanes)
    bias = np.zeros(k_blocks * lanes, np.float32)
    if "bias" in w:
        bias[:w["weight"].shape[0]] = w["bias"]
    return {"weight": packed, "bias": bias}


@dataclass(frozen=True)
class Tile:
    r: int  # tile row within the item
    dtw: int  # tile column from the block's first
    off: int  # its offset in a plane of the item's V: r·XW + dtw, times C where V is [R][XW][C] (blocked input)


@dataclass(frozen=True)
class Slot:
    """Where accumulator a<vector>_<tile> goes in the block's products m[xi][index]."""
    vector: int
    tile: int
    index: int


@dataclass(frozen=True)
class TileBlock:
    """`count` equal register blocks of n tiles from tile column tw0 (cols tile columns per tile row)."""
    tw0: int
    count: int
    n: int
    cols: int
    tiles: tuple[Tile, ...]
    slots: tuple[Slot, ...]


@dataclass(frozen=True)
class LaneStore:
    """Output channel lane `index` of a whole tile: its plane's offset index·OH·OW; guarded: only when the
    channel exists (the last, partly filled vector)."""
    index: int
    offset: int
    guarded: bool


@dataclass(frozen=True)
class TileOutput:
    """One of a tile's four outputs: its vector's name, its offset from the tile's first output and the C
    condition under which it is inside the map ("": always)."""
    name: str
    offset: int
    inside: str = ""


@dataclass(frozen=True)
class WinogradVectors(ConvParams):
    """What both Winograd kernels' templates read besides the geometry (templates/ops/_winograd.c.j2): the
    vectors of output channels, the register block's filter vectors, a tile's four outputs (two DH apart by two
    DW apart) and how their lanes are stored."""
    VL: int
    VECTOR_BYTES: int
    KB: int
    LAST_KB: int
    KV: int
    LASTN: int
    PARTIAL_LAST: bool
    filter_vectors: tuple[Offset, ...]  # per filter vector q of a block: its weights' offset q·C
    lane_stores: tuple[LaneStore, ...]
    tile_outputs: tuple[TileOutput, ...]  # offsets in floats: pixels, or pixels × VL where Y_BLOCKED
    VECTOR_ACTIVATION: bool  # the activation runs on the output vectors before the lanes are stored (no residual)
    Y_BLOCKED: bool  # the output is channel-blocked [K/VL][OH][OW][VL]: each output vector is one whole store
    VECTOR_EPILOGUE: bool  # the activation runs on vectors anywhere (VECTOR_ACTIVATION, or at the blocked stores)
    X_BLOCKED: bool  # the input is channel-blocked [C/XL][H][W][XL]: a channel's pixels are XL floats apart
    XL: int  # its lanes (0: C×H×W)
    X_BLOCK_FLOATS: int  # H·W·XL: floats between two blocks of XL input channels
    X_ROW: int  # floats between two input rows of a channel: W, or W·XL


def tile_outputs(g: dict, dw: int, dh_ow: int) -> tuple[TileOutput, ...]:
    """A tile's outputs (oh, ow), (oh, ow + DW), (oh + DH, ow), (oh + DH, ow + DW), dw and dh_ow floats apart; the
    second column (row) is past the map's edge in the last tiles where OW (OH) is not a multiple of 2·DW (2·DH)."""
    col = f"ow + {g['DW']} < {g['OW']}" if g["OW"] % (2 * g["DW"]) else ""
    row = f"oh + {g['DH']} < {g['OH']}" if g["OH"] % (2 * g["DH"]) else ""
    return (TileOutput("y00", 0), TileOutput("y01", dw, col), TileOutput("y10", dh_ow, row),
            TileOutput("y11", dh_ow + dw, " && ".join(c for c in (row, col) if c)))


def vector_fields(g: dict, lanes: int, k_blocks: int, kv: int, k: int, c: int, y_blocked: bool,
                  x_lanes: int) -> dict:
    """The WinogradVectors fields of a layer of ConvParams `g` (x_lanes: the input's blocking, 0 for C×H×W)."""
    lastn = k - (k_blocks - 1) * lanes
    pixel = lanes if y_blocked else 1  # floats between two output pixels
    dh_ow, dw = g["DH"] * g["OW"] * pixel, g["DW"] * pixel
    return dict(
        VL=lanes, VECTOR_BYTES=4 * lanes, KB=k_blocks, LAST_KB=k_blocks - 1, KV=kv, LASTN=lastn,
        PARTIAL_LAST=lastn != lanes, filter_vectors=tuple(Offset(q, q * c) for q in range(kv)),
        lane_stores=tuple(LaneStore(l, l * g["OHW"], lastn != lanes and l >= lastn) for l in range(lanes)),
        tile_outputs=tile_outputs(g, dw, dh_ow),
        VECTOR_ACTIVATION=bool(g["activation"]) and not g["residual"] and not y_blocked, Y_BLOCKED=y_blocked,
        VECTOR_EPILOGUE=bool(g["activation"]) and (y_blocked or not g["residual"]),
        X_BLOCKED=bool(x_lanes), XL=x_lanes, X_BLOCK_FLOATS=g["HW"] * x_lanes, X_ROW=g["W"] * (x_lanes or 1))


@dataclass(frozen=True)
class WinogradParams(WinogradVectors):
    TH: int  # tile rows
    TW: int  # tile columns
    R: int  # tile rows per item
    XW: int
    XB: int
    RXW: int
    XI_STRIDE: int
    ITEM_FLOATS: int
    SCRATCH: int
    even_lo: int
    even_hi: int
    odd_lo: int
    odd_hi: int
    ODD_SHIFT: int  # 1 − PL
    CB: int  # channels per chunk of split rows
    CHANNEL_REMAINDER: int  # C mod CB
    X_BLOCKS: int  # C/XL: blocks of input channels of a channel-blocked input (0: C×H×W)
    blocks: tuple[TileBlock, ...]
    NTMAX: int
    M_SLOTS: int  # KV·NTMAX
    ITEMS: int
    parallel: bool


def winograd_params(geometry: dict, p: Plan, k: int, c: int, macs: int, y_blocked: bool,
                    x_lanes: int) -> WinogradParams:
    """The template record of a layer of ConvParams `geometry` with plan p."""
    k_blocks = p.k_blocks
    pl, w = geometry["PL"], geometry["W"]
    if x_lanes and (x_lanes != p.lanes or c % x_lanes):
        raise ValueError(f"a channel-blocked input needs {p.lanes}-lane blocks and C a multiple of them, got "
                         f"{x_lanes} lanes for C = {c}")
    tile_floats = c if x_lanes else 1  # floats between two tiles in V: [XW][C] per row, or [C][XW]
    # the split input rows: padded column 2j (+ 1) is input column 2j (+ 1) - PL
    blocks: list[dict] = []  # consecutive equal blocks of one tile row become one C loop
    for b in p.blocks:
        tiles = [Tile(r, tw - b[0][1], (r * p.row_width + tw - b[0][1]) * tile_floats) for r, tw in b]
        last = blocks[-1] if blocks else None
        if p.rows_per_item == 1 and last and len(last["tiles"]) == len(tiles):
            last["count"] += 1
        else:
            blocks.append({"tw0": b[0][1], "count": 1, "tiles": tiles, "cols": len(b) // p.rows_per_item})
    cb = min(c, max(1, -(-PAD_ROW_FLOATS // (4 * (p.row_width + p.lanes)))))
    ntmax = max(len(b) for b in p.blocks)
    return WinogradParams(
        **geometry, **vector_fields(geometry, p.lanes, k_blocks, p.kv, k, c, y_blocked, x_lanes),
        TH=p.tile_rows, TW=p.tile_cols, R=p.rows_per_item, XW=p.row_width, XB=p.row_width + p.lanes,
        RXW=p.rows_per_item * p.row_width, XI_STRIDE=p.xi_stride(c), ITEM_FLOATS=p.item_floats(c),
        SCRATCH=scratch_floats(p, c),
        even_lo=(pl + 1) // 2, even_hi=(w - 1 + pl) // 2 + 1, odd_lo=pl // 2, odd_hi=(w - 2 + pl) // 2 + 1,
        ODD_SHIFT=1 - pl, CB=cb, CHANNEL_REMAINDER=c % cb, X_BLOCKS=c // x_lanes if x_lanes else 0,
        blocks=tuple(TileBlock(b["tw0"], b["count"], len(b["tiles"]), b["cols"], tuple(b["tiles"]),
                               tuple(Slot(q, j, q * len(b["tiles"]) + j)
                                     for q in range(p.kv) for j in range(len(b["tiles"]))))
                     for b in blocks),
        NTMAX=ntmax, M_SLOTS=p.kv * ntmax, ITEMS=p.items, parallel=macs >= PARALLEL_MACS)


class WinogradFamily(Kernel):
    """What the two Winograd kernels share: their ops, transformed weights, scratch and thread pool, and how a
    layer's plan, cost and template record come from the kernel module's functions (set per kernel)."""
    ops = CONV_OPS
    eligibility: ClassVar  # why_not_eligible(attrs, c, args)
    planner: ClassVar  # plan(args, c, k, target)
    cost: ClassVar  # predicted_cycles(plan, c, k, args, target) -> (direct, this kernel)
    record: ClassVar  # the params record from (geometry, plan, k, c, macs, y_blocked, x_lanes)

    def unsuitable(self, layer, in_shapes, out_shape, target):
        return self.eligibility(layer.attrs, in_shapes[0][0], layer.spec.kernel_args(layer, in_shapes, out_shape))

    def cost_reason(self, layer, in_shapes, out_shape, target) -> str | None:
        """Why it takes the layer, if its cost model predicts it beats the direct kernel (None: it does not)."""
        c, k = in_shapes[0][0], layer.attrs.filters
        args = layer.spec.kernel_args(layer, in_shapes, out_shape)
        direct, wino = self.cost(self.planner(args, c, k, target), c, k, args, target)
        if wino >= direct:
            return None
        return f"cost model: {wino / 1e3:.0f}k cycles against {direct / 1e3:.0f}k for the direct kernel"

    def params(self, layer, in_shapes, out_shape, target, layouts):
        geometry = conv_fields(layer, in_shapes, out_shape)
        c, k = in_shapes[0][0], layer.attrs.filters
        return self.record(geometry, self.planner(geometry, c, k, target), k, c,
                           layer.spec.macs(layer, in_shapes, out_shape), bool(layouts[-1]), layouts[0] or 0)

    def blocked_io(self, layer, in_shapes, out_shape, target):
        """Its products are vectors of output channels, which a channel-blocked output takes as whole stores
        (C×H×W takes them lane by lane). It reads either layout: `winograd` transforms a blocked input on vectors
        of XL channels of one tile, `winograd_planes` gathers each channel's pixels (XL floats apart) into its
        split rows."""
        return ("any",) + ("same",) * (len(in_shapes) - 1)

    def scratch_floats(self, params):
        return params.SCRATCH

    def arrays(self, layer, weights, params):
        return winograd_arrays(weights, params.VL)

    def uses_thread_pool(self, params):
        return True


@register_kernel
class Winograd(WinogradFamily):
    name = "winograd"
    template = "ops/conv2d_winograd.c.j2"
    priority = 30
    eligibility, planner = staticmethod(why_not_eligible), staticmethod(plan)
    cost, record = staticmethod(predicted_cycles), staticmethod(winograd_params)

    def wanted(self, layer, in_shapes, out_shape, target):
        """Where the cost model predicts it beats the direct kernel, and its transformed weights stay in cache."""
        if weight_bytes(in_shapes[0][0], layer.attrs.filters, target.lanes) > MAX_WEIGHT_BYTES:
            return None
        return self.cost_reason(layer, in_shapes, out_shape, target)
