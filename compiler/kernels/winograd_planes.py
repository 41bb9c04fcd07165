"""winograd_planes: Winograd F(2×2, 3×3) as 16 matrix products over the whole map, for the 3×3 stride-1 convs
the item-wise `winograd` kernel leaves: dilated ones, and ones whose transformed weights outgrow the cache
(templates/ops/conv2d_winograd_planes.c.j2).

The item-wise kernel reads every transformed weight once per register block of tiles, which is cheap while
the weights stay in L2. FCN's and DeepLab's classifier head (2048 -> 512 channels at 28×28: 67 MB of
transformed weights) or VGG's 512-channel layers would stream them from memory dozens of times. This kernel
reads them once per sample, in passes over the layer. Per group of GC input channels (V_BUDGET_BYTES of V):
1. transform: per input channel, V = Bᵀ d B of every tile into the scratch, laid out [16][GC][T + VL];
2. products: per plane ξ (16 work items), M[ξ] += U[ξ] · V[ξ] as a blocked matrix product over chunks of
   input channels, so each chunk of V (and the weights of a pair of filter vectors) stays in cache while
   every filter vector (every tile) passes over it; M [16][K/VL][T][VL] collects the partial sums;
then 3. outputs: per vector of output channels, Y = Aᵀ M A + bias (+ residual, activation), stored to C×H×W.

A dilated conv (dilation DH×DW) is DH·DW undilated convs on the phases of its map: output rows py, py + DH,
py + 2·DH, ... read only input rows of the same phase. A tile is two outputs DH apart by two DW apart; per
input channel, the padded input is copied once into a buffer split by row phase, column phase and column
parity, so four vector loads give 16 tiles' patch columns as in the undilated kernel (from a channel-blocked
input the copy gathers the channel's pixels, XL floats apart). The tiles of all phases are numbered in one
sequence (phase, tile row, tile column) that the products pass runs over whole.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..target import Target
from . import register_kernel
from .common import PARALLEL_MACS, STACK_BUFFER_BYTES, Offset, cache_bytes
from .winograd import (GEMM_EFFICIENCY, MAX_WEIGHT_BYTES, MIN_CHANNELS, OUTPUT_CYCLES, TRANSFORM_CYCLES,
                       WinogradFamily, WinogradVectors, direct_cycles, equal_blocks, vector_fields, weight_bytes)

MAX_DILATION = 4  # more phases than 4×4 leave each too few tiles (DeepLab's ASPP at 12–36 keeps the direct kernel)
MEMORY_BYTES_PER_CYCLE = 8.0  # one core streaming from memory (the cost model's term for U, V and M)
MIN_CHUNK = 16  # input channels per chunk of the products at the least
# V of a group of input channels: FCN's head (2048 channels, 196 tiles) would hold 28 MB of it at once; in groups
# its scratch is this plus M (6.4 MB), and M is re-read once per group.
V_BUDGET_BYTES = 8 << 20
# Below this the direct kernel's one pass costs about what the three passes save (a dilated 32 -> 32 conv at
# 32×32, 9.4 M multiply-adds, one thread: 0.17 against 0.18 ms on the AVX-512 host, 0.19 against 0.15 ms for the
# AVX2 build; 64 -> 64 at 28×28, 29 M: 0.49 against 0.45, 0.53 against 0.34 ms).
MIN_MACS = 8 << 20


def why_not_eligible(attrs, c: int, args: dict) -> str | None:
    if attrs.groups != 1 or attrs.kernel != (3, 3) or attrs.stride != (1, 1):
        return "it computes 3×3, stride-1 convolutions with groups = 1 only"
    if max(attrs.dilation) > MAX_DILATION:
        return f"its dilation is at most {MAX_DILATION} (this layer's is {attrs.dilation[0]}×{attrs.dilation[1]})"
    if c < MIN_CHANNELS:
        return f"it needs at least {MIN_CHANNELS} input channels (this layer has {c})"
    if args["OH"] < 2 * args["DH"] or args["OW"] < 2 * args["DW"]:
        return (f"it needs two output rows and columns per dilation phase (output {args['OH']}×{args['OW']}, "
                f"dilation {args['DH']}×{args['DW']})")
    buffer = 4 * input_buffer_floats(args, 16)  # the widest vectors the planner may pick
    if buffer > STACK_BUFFER_BYTES:
        return f"its split input rows take {buffer} bytes of stack, more than {STACK_BUFFER_BYTES}"
    return None


@dataclass(frozen=True)
class TilePhase:
    """The tiles of output phase (py, px): rows py, py + DH, ... and columns px, px + DW, ..., two by two:
    `rows` × `cols` tiles numbered from `first`; `buffer`: its parity-0 split row 0 in the input buffer."""
    py: int
    px: int
    rows: int
    cols: int
    first: int
    buffer: int


@dataclass(frozen=True)
class FillColumns:
    """One column phase and parity of the split input rows: buffer columns lo..hi-1 (at `offset` in a buffer
    row) hold input columns first, first + step, ...; the others stay zero (padding)."""
    offset: int
    lo: int
    hi: int
    first: int
    step: int


@dataclass(frozen=True)
class FillRows:
    """Row phase py of the split input rows: sub-rows lo..hi-1 (at base + i·ROW_STRIDE) hold input rows first,
    first + DH, ...; the others stay zero (padding)."""
    py: int
    lo: int
    hi: int
    first: int
    base: int


@dataclass(frozen=True)
class TileRun:
    """`count` equal register blocks of n tiles from tile t0; tiles: accumulator a<q>_<j> and its offset j from t0."""
    t0: int
    n: int
    count: int
    tiles: tuple[Offset, ...]  # per tile j of a block: its offset in M's row of tiles (j)


def phase_tiles(oh: int, ow: int, dh: int, dw: int) -> list[tuple[int, int, int, int]]:
    """Per output phase (py, px): (py, px, tile rows, tile columns)."""
    return [(py, px, -(-len(range(py, oh, dh)) // 2), -(-len(range(px, ow, dw)) // 2))
            for py in range(dh) for px in range(dw)]


def buffer_shape(args: dict, lanes: int) -> tuple[int, int, int]:
    """(sub-rows per row phase SR, floats per split row XB, floats between sub-rows ROW_STRIDE) of the input
    buffer [DH][SR][DW][2][XB]: a phase's tile row j reads sub-rows 2j..2j+3, and a vector of tiles from
    column x reads split columns x..x+VL (the last vector of a row runs past its tiles)."""
    tiles = phase_tiles(args["OH"], args["OW"], args["DH"], args["DW"])
    sr = 2 * max(t[2] for t in tiles) + 2
    xb = -(-max(t[3] for t in tiles) // lanes) * lanes + 1
    return sr, xb, args["DW"] * 2 * xb


def input_buffer_floats(args: dict, lanes: int) -> int:
    sr, _, row_stride = buffer_shape(args, lanes)
    return args["DH"] * sr * row_stride


@dataclass(frozen=True)
class Plan:
    lanes: int
    k_blocks: int
    kv: int
    tiles: int  # T
    tile_stride: int  # TS: floats per channel in a plane of V (T + VL: the last vector store runs past)
    chunk: int  # CC: input channels per chunk of the products
    group: int  # GC: input channels transformed before their products, a whole number of chunks
    runs: tuple[tuple[int, int, int], ...]  # (t0, n, count) register blocks over the tiles
    phases: tuple[tuple[int, int, int, int], ...]


def plan(args: dict, c: int, k: int, target: Target) -> Plan:
    lanes = target.lanes
    k_blocks = -(-k // lanes)
    kv = 2 if k_blocks % 2 == 0 else 1
    nt = target.vector_registers * 3 // 4 // kv  # KV·NT accumulators: 24 of 32 vector registers, 12 of 16
    phases = tuple(phase_tiles(args["OH"], args["OW"], args["DH"], args["DW"]))
    tiles = sum(r * w for _, _, r, w in phases)
    stride = tiles + lanes
    # a chunk of V (CC channels of every tile) takes a quarter of the cache this core keeps between passes
    most = max(MIN_CHUNK, cache_bytes(target) // 4 // (4 * stride))
    chunks = -(-c // most)
    runs: list[list[int]] = []
    start = 0
    for n in equal_blocks(tiles, nt):
        if runs and runs[-1][1] == n:
            runs[-1][2] += 1
        else:
            runs.append([start, n, 1])
        start += n
    chunk = -(-c // chunks)
    group = min(c, chunk * max(1, V_BUDGET_BYTES // (16 * 4 * stride * chunk)))
    return Plan(lanes, k_blocks, kv, tiles, stride, chunk, group, tuple(tuple(r) for r in runs), phases)


def scratch_parts(p: Plan, c: int) -> tuple[int, int]:
    """Floats of V [16][GC][TS] (rounded to whole 64-byte lines) and of M [16][KB][T][VL]."""
    v = -(-16 * p.group * p.tile_stride // 16) * 16
    return v, 16 * p.k_blocks * p.tiles * p.lanes


def predicted_cycles(p: Plan, c: int, k: int, args: dict, target: Target) -> tuple[float, float]:
    """(direct, winograd_planes) cycles per sample, the cost model of compiler/kernels/winograd.py plus the
    memory traffic of the passes where their data outgrow L2 (U read once, V written and read once, M written
    and read once per group of input channels)."""
    direct = direct_cycles(p.lanes, p.kv, c, k, args)
    gemm = sum(16 * c * n * count * p.k_blocks / GEMM_EFFICIENCY / min(1.0, p.kv * n / 8) for _, n, count in p.runs)
    transform = c * sum(r * -(-w // p.lanes) for _, _, r, w in p.phases) * TRANSFORM_CYCLES
    output = p.k_blocks * p.lanes * p.tiles * 4 * OUTPUT_CYCLES
    v, m = scratch_parts(p, c)
    u_bytes, vm_bytes = weight_bytes(c, k, p.lanes), 4 * (v + m)
    memory = (u_bytes if u_bytes > target.l2_bytes * 3 // 4 else 0)
    if vm_bytes > target.l2_bytes:  # every channel's V and, per group, M written and read
        memory += 2 * 4 * (16 * c * p.tile_stride + m * -(-c // p.group))
    memory /= MEMORY_BYTES_PER_CYCLE
    return direct, gemm + transform + output + memory


@dataclass(frozen=True)
class PlanesParams(WinogradVectors):
    T: int  # tiles, all phases
    TS: int  # floats per input channel in a plane of V
    V_PLANE: int  # GC·TS
    V_FLOATS: int  # 16 planes of V, rounded to whole lines (M follows)
    GC: int  # input channels per group
    GC_LAST: int  # in the last group
    M_PLANE: int  # KB·T·VL
    SCRATCH: int
    CC: int  # input channels per chunk of the products
    CC_LAST: int  # in the last chunk
    runs: tuple[TileRun, ...]
    phases: tuple[TilePhase, ...]
    PHASES: int
    SR: int
    XB: int
    ROW_STRIDE: int  # floats between a phase's split sub-rows
    BUFFER: int  # floats of the split input buffer
    fill_rows: tuple[FillRows, ...]
    fill_columns: tuple[FillColumns, ...]
    parallel: bool


def planes_params(g: dict, p: Plan, k: int, c: int, macs: int, y_blocked: bool, x_lanes: int) -> PlanesParams:
    """The template record of a layer of ConvParams `g` with plan p."""
    dh, dw, pt, pl = g["DH"], g["DW"], g["PT"], g["PL"]
    sr, xb, row_stride = buffer_shape(g, p.lanes)
    phases, first = [], 0
    for py, px, rows, cols in p.phases:
        phases.append(TilePhase(py, px, rows, cols, first, py * sr * row_stride + px * 2 * xb))
        first += rows * cols
    fill_rows = []
    for py in range(dh):  # sub-row i of row phase py: padded row py + DH·i, input row py + DH·i − PT
        inside = [i for i in range(sr) if 0 <= py + dh * i - pt < g["H"]]
        if inside:
            fill_rows.append(FillRows(py, inside[0], inside[-1] + 1, py + dh * inside[0] - pt, py * sr * row_stride))
    fill_columns = []
    for px in range(dw):  # split column j of phase px, parity e: padded column px + DW·(2j + e)
        for parity in range(2):
            inside = [j for j in range(xb) if 0 <= px + dw * (2 * j + parity) - pl < g["W"]]
            if inside:
                fill_columns.append(FillColumns((2 * px + parity) * xb, inside[0], inside[-1] + 1,
                                                px + dw * (2 * inside[0] + parity) - pl, 2 * dw))
    v_floats, m_floats = scratch_parts(p, c)
    return PlanesParams(
        **g, **vector_fields(g, p.lanes, p.k_blocks, p.kv, k, c, y_blocked, x_lanes),
        T=p.tiles, TS=p.tile_stride, V_PLANE=p.group * p.tile_stride, V_FLOATS=v_floats,
        GC=p.group, GC_LAST=c - (-(-c // p.group) - 1) * p.group, M_PLANE=m_floats // 16,
        SCRATCH=max(v_floats + m_floats, 16 * c),  # the portable path: V of one tile [16][C]
        CC=p.chunk, CC_LAST=c - (-(-c // p.chunk) - 1) * p.chunk,
        runs=tuple(TileRun(t0, n, count, tuple(Offset(j, j) for j in range(n))) for t0, n, count in p.runs),
        phases=tuple(phases), PHASES=len(phases), SR=sr, XB=xb, ROW_STRIDE=row_stride, BUFFER=dh * sr * row_stride,
        fill_rows=tuple(fill_rows), fill_columns=tuple(fill_columns), parallel=macs >= PARALLEL_MACS)


@register_kernel
class WinogradPlanes(WinogradFamily):
    name = "winograd_planes"
    template = "ops/conv2d_winograd_planes.c.j2"
    priority = 25  # after `winograd`, which takes the undilated layers whose weights stay in cache
    eligibility, planner = staticmethod(why_not_eligible), staticmethod(plan)
    cost, record = staticmethod(predicted_cycles), staticmethod(planes_params)

    def wanted(self, layer, in_shapes, out_shape, target):
        """Dilated layers, and layers whose transformed weights outgrow the item-wise kernel's limit, of at least
        MIN_MACS multiply-adds, where the cost model predicts it beats the direct kernel."""
        c, k = in_shapes[0][0], layer.attrs.filters
        if layer.attrs.dilation == (1, 1) and weight_bytes(c, k, target.lanes) <= MAX_WEIGHT_BYTES:
            return None
        if layer.spec.macs(layer, in_shapes, out_shape) < MIN_MACS:
            return None
        return self.cost_reason(layer, in_shapes, out_shape, target)
