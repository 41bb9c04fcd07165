"""Winograd F(2×2, 3×3) for 3×3, stride 1, dilation 1, groups 1 convolutions at opt_level 2.

Each 2×2 block of outputs ("tile") comes from a 4×4 input patch d:  Y = Aᵀ [U ⊙ V] A  with
V = Bᵀ d B (per input channel) and U = G g Gᵀ (per filter, at compile time), and the ⊙ summed
over the input channels: 16 small matrix products, 16·C multiply-adds per tile and filter instead
of the 36·C of the direct kernel (2.25× fewer).

Kernel shape (templates/ops/conv2d_winograd.c.j2): one work item is R rows of tiles. It first
transforms its input patches into its own part of the layer's scratch, laid out [16][C][R][XW]
(tile column tw at tw; the input rows are split into even and odd columns first, so the column
transform runs on whole vectors of 16 tiles),
then for each pair of output-channel vectors and each register block of tiles accumulates the 16
products over C in registers (like the blocked kernel), and turns them into outputs with Aᵀ M A.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..target import Target
from . import fastconv

# Transform matrices (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2015).
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)
BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)

MIN_CHANNELS = fastconv.ROWVEC_MAX_CHANNELS + 1  # fewer input channels: the row-vector kernel
PAD_ROW_FLOATS = 1024  # split input rows per chunk of channels: enough that their stores drain before reuse
MAX_ROW = 512  # input/output row length limit: the kernel keeps split input rows (≥ 1 channel) on the stack
# Cost model, in cycles; fitted to per-layer times of ResNet-18 and CIFAR VGG on the AVX-512 machine
# (one 16-lane FMA per cycle), each term measured by leaving the others out.
DIRECT_EFFICIENCY = 0.93  # the blocked kernel runs at ~93% of the FMA peak (one vector FMA per cycle)
DIRECT_ONE_VECTOR_SLOWDOWN = 1.5  # ... and at ~62% with an odd number of filter vectors (one per register block)
GEMM_EFFICIENCY = 0.75  # the products' share of the peak with ≥ 8 accumulators (more loads per FMA than direct)
TRANSFORM_CYCLES = 6.0  # per input channel, tile row and vector of tiles: split row copies, Bᵀ d B, 16 stores
OUTPUT_CYCLES = 6.0  # per output value: Aᵀ M A share, bias, residual, activation, scattered store
L3_BYTES_PER_CYCLE = 24.0
MAX_WEIGHT_BYTES = 8 << 20  # beyond this the transformed weights come from memory: keep the direct kernel
USE_COST_MODEL = True  # False: every eligible layer takes Winograd (tests reach small shapes this way)


def eligible(attrs, c: int, args: dict) -> bool:
    return (attrs.groups == 1 and attrs.kernel == (3, 3) and attrs.stride == (1, 1)
            and attrs.dilation == (1, 1) and c >= MIN_CHANNELS
            and max(args["W"], args["OW"]) <= MAX_ROW and args["OH"] >= 1 and args["OW"] >= 1)


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


def _row_blocks(tw: int, nt: int) -> list[int]:
    """A row of tw tiles cut into register blocks of at most nt tiles, as equal as possible."""
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
        for n in _row_blocks(tw, nt):
            blocks.append(tuple((0, start + j) for j in range(n)))
            start += n
    else:
        blocks = [tuple((r, j) for r in range(rows) for j in range(tw))]
    row_width = -(-tw // lanes) * lanes
    return Plan(lanes, k_blocks, kv, th, tw, rows, row_width, tuple(blocks))


def predicted_cycles(p: Plan, c: int, k: int, args: dict, target: Target) -> tuple[float, float]:
    """(direct, winograd) cycles per sample from the cost model above."""
    direct = k * args["OH"] * args["OW"] * c * 9 / (p.lanes * DIRECT_EFFICIENCY)
    if p.kv == 1:  # the blocked kernel's register blocks have the same shape (fastconv.block_shape)
        direct *= DIRECT_ONE_VECTOR_SLOWDOWN
    gemm = 0.0
    for b in p.blocks:  # vector FMAs; small blocks cannot hide the FMA latency (8 independent chains)
        fmas = 16 * c * len(b) * p.k_blocks
        gemm += fmas / GEMM_EFFICIENCY / min(1.0, p.kv * len(b) / 8)
    gemm *= p.items
    transform = c * p.items * p.rows_per_item * (p.row_width // p.lanes + 1) * TRANSFORM_CYCLES
    output = k * args["OH"] * args["OW"] * OUTPUT_CYCLES
    u_bytes = weight_bytes(c, k, p.lanes)
    # transformed weights beyond 3/4 of L2 are re-read from L3 once per register block
    stream = u_bytes * p.items * len(p.blocks) / L3_BYTES_PER_CYCLE if u_bytes > target.l2_bytes * 3 // 4 else 0.0
    return direct, gemm + transform + output + stream


def weight_bytes(c: int, k: int, lanes: int) -> int:
    return 16 * c * -(-k // lanes) * lanes * 4


def chosen(attrs, in_shape, args: dict, target: Target) -> Plan | None:
    """The Winograd plan when this layer is eligible and predicted faster than the blocked kernel."""
    c = in_shape[0]
    if not eligible(attrs, c, args) or (weight_bytes(c, attrs.filters, target.lanes) > MAX_WEIGHT_BYTES
                                        and USE_COST_MODEL):
        return None
    p = plan(args, c, attrs.filters, target)
    direct, wino = predicted_cycles(p, c, attrs.filters, args, target)
    return p if wino < direct or not USE_COST_MODEL else None


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


def winograd_lowering(args: dict, weights: dict[str, np.ndarray], macs: int, p: Plan):
    """args: the plain conv2d kernel_args (+ residual / act). Returns (template, arrays, args)."""
    k, c = weights["weight"].shape[:2]
    packed, k_blocks = transform_weights(weights["weight"], p.lanes)
    bias = np.zeros(k_blocks * p.lanes, np.float32)
    if "bias" in weights:
        bias[:k] = weights["bias"]
    rxw = p.rows_per_item * p.row_width
    pl, w = args["PL"], args["W"]  # the split input rows: padded column 2j (+ 1) is input column 2j (+ 1) - PL
    blocks = []  # consecutive equal blocks of one tile row become one C loop
    for b in p.blocks:
        tiles = [{"r": r, "dtw": tw - b[0][1], "off": r * p.row_width + tw - b[0][1]} for r, tw in b]
        last = blocks[-1] if blocks else None
        if p.rows_per_item == 1 and last and len(last["tiles"]) == len(tiles):
            last["count"] += 1
        else:
            blocks.append({"tw0": b[0][1], "count": 1, "tiles": tiles, "cols": len(b) // p.rows_per_item})
    out = dict(args, VL=p.lanes, KB=k_blocks, KV=p.kv, LASTN=k - (k_blocks - 1) * p.lanes, TH=p.tile_rows,
               TW=p.tile_cols, R=p.rows_per_item, XW=p.row_width, XB=p.row_width + p.lanes, RXW=rxw,
               XI_STRIDE=p.xi_stride(c), ITEM_FLOATS=p.item_floats(c), OHW=args["OH"] * args["OW"],
               even_lo=(pl + 1) // 2, even_hi=(w - 1 + pl) // 2 + 1, odd_lo=pl // 2, odd_hi=(w - 2 + pl) // 2 + 1,
               CB=min(c, max(1, -(-PAD_ROW_FLOATS // (4 * (p.row_width + p.lanes))))),
               blocks=blocks, NTMAX=max(len(b) for b in p.blocks), ITEMS=p.items, parallel=macs >= fastconv.PARALLEL_MACS)
    return "ops/conv2d_winograd.c.j2", {"weight": packed, "bias": bias}, out
