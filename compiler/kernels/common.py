"""What several kernels share: work and stack budgets, the conv geometry, filter packing and row cutting."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..target import Target

PARALLEL_MACS = 1 << 20  # below this (~10 µs of work) a layer runs on the caller's thread alone
# A pool reads each value once or a few times, from memory, with a compare or add per read: worth threads
# sooner than a conv. SqueezeNet's 3×3/2 max pools of 0.84 M and 0.39 M reads, AVX2 build: 47 and 55 µs on one
# thread, 27 and 42 µs on two.
PARALLEL_READS = PARALLEL_MACS // 4
# A kernel's copy of its input rows lives on the stack: bigger ones take another kernel.
STACK_BUFFER_BYTES = 96 * 1024


def pin_condition(target: Target, registers: int) -> str:
    """The C condition under which a register block that needs `registers` vector registers (accumulators and
    the values it reuses) may pin those values in registers with an empty asm statement: GCC otherwise reads
    them again as FMA memory operands, one load per FMA. Only on x86 with 16 registers, and only when the block
    fits them ("": never); 32-byte vectors need AVX in the compiler's flags to sit in a register."""
    if target.arch != "x86_64" or target.vector_registers >= 32 or registers > target.vector_registers:
        return ""
    return "defined(__x86_64__) && defined(__AVX__)" if target.lanes == 8 else "defined(__x86_64__)"


def cache_bytes(target: Target) -> int:
    """Data this size stays in a core's L2 (about half of it) between passes."""
    return target.l2_bytes // 2


@dataclass(frozen=True)
class WindowParams:
    """The geometry of a sliding-window layer (the op's kernel_args as a record): input C×H×W, window KH×KW,
    stride, dilation, top/left padding, output OH×OW, the taps [lo, hi) inside the input per output row and
    column."""
    C: int
    H: int
    W: int
    HW: int
    OH: int
    OW: int
    KH: int
    KW: int
    SH: int
    SW: int
    DH: int
    DW: int
    PT: int
    PL: int
    row_lo: tuple[int, ...]
    row_hi: tuple[int, ...]
    col_lo: tuple[int, ...]
    col_hi: tuple[int, ...]


@dataclass(frozen=True)
class ConvParams(WindowParams):
    """What every conv kernel's template reads besides the window: K filters in groups (CG input, KG output
    channels each), OH·OW, bias and the fused epilogue."""
    K: int
    CG: int
    KG: int
    KHW: int
    WK: int
    OHW: int
    has_bias: bool
    residual: bool
    activation: tuple  # compiler.ops.fused.ActivationStep


def record_fields(cls: type, layer, in_shapes, out_shape, **extra) -> dict[str, Any]:
    """The fields of params record `cls` that the op's kernel_args give (lists as tuples), plus `extra`."""
    args = dict(layer.spec.kernel_args(layer, in_shapes, out_shape), **extra)
    return {f.name: tuple(args[f.name]) if isinstance(args[f.name], list) else args[f.name]
            for f in dataclasses.fields(cls) if f.name in args}


def _inside_range(lo: tuple[int, ...], hi: tuple[int, ...], taps: int) -> tuple[int, int]:
    """The range [a, b) of outputs whose window has all `taps` taps inside (they are consecutive), or (0, 0)."""
    inside = [o for o, (l, h) in enumerate(zip(lo, hi)) if l == 0 and h == taps]
    return (inside[0], inside[-1] + 1) if inside else (0, 0)


@dataclass(frozen=True)
class PoolParams(WindowParams):
    """A max or average pool's window, its interior (every tap inside the input) apart from the frame."""
    average: bool  # an average pool (sums divided by counts), else a max pool
    row_div: tuple[int, ...]  # average: the divisor of output (oh, ow) is row_div[oh]·col_div[ow]
    col_div: tuple[int, ...]
    OH_A: int  # output rows [OH_A, OH_B) have every window row inside the input
    OH_B: int
    OW_A: int  # output columns [OW_A, OW_B) have every window column inside the input
    OW_B: int
    taps: tuple[int, ...]  # the interior window's taps as offsets from its first, rows then columns
    KHW: int  # the interior windows' divisor (average): KH·KW


def pool_fields(cls: type, layer, in_shapes, out_shape, average: bool, pixel_floats: int = 1) -> dict[str, Any]:
    """The PoolParams fields (and those of `cls` the op's kernel_args give); pixel_floats: floats per input pixel
    (the lanes of a channel-blocked input), which scales the taps' offsets."""
    g = record_fields(cls, layer, in_shapes, out_shape)
    if not average:
        g["row_div"], g["col_div"] = (1,) * g["OH"], (1,) * g["OW"]
    oh_a, oh_b = _inside_range(g["row_lo"], g["row_hi"], g["KH"])
    ow_a, ow_b = _inside_range(g["col_lo"], g["col_hi"], g["KW"])
    if oh_a == oh_b or ow_a == ow_b:
        oh_a = oh_b = ow_a = ow_b = 0  # no interior: every window is in the frame
    taps = tuple((i * g["DH"] * g["W"] + j * g["DW"]) * pixel_floats for i in range(g["KH"]) for j in range(g["KW"]))
    return dict(g, average=average, OH_A=oh_a, OH_B=oh_b, OW_A=ow_a, OW_B=ow_b, taps=taps, KHW=g["KH"] * g["KW"])



def window_parallel(g: dict[str, Any]) -> bool:
    """Whether a pool of this geometry splits its channels across threads: C·OH·OW·KH·KW reads or more than
    PARALLEL_READS."""
    return g["C"] * g["OH"] * g["OW"] * g["KH"] * g["KW"] >= PARALLEL_READS


def conv_fields(layer, in_shapes, out_shape) -> dict[str, Any]:
    """The ConvParams fields of a conv or fused conv layer, for a kernel's params record."""
    return record_fields(ConvParams, layer, in_shapes, out_shape, OHW=out_shape[1] * out_shape[2])


def conv_weights(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v for k, v in weights.items() if k in ("weight", "bias")}


def block_shape(k_blocks: int, registers: int) -> tuple[int, int]:
    """(KV vectors of output channels, PB output pixels) per register block: KV·PB accumulators plus one
    input value, and the KV weights in registers (32 with AVX-512) or, with 16 (AVX2), 4 × 3 blocks whose
    weights GCC reads as FMA memory operands. 2 × 6 there held every register (12 accumulators, 2 weights, 1
    input) and ran slower at every row length measured (ResNet-18's AVX2 build: layer4's 7×7 3×3 convs 65 ->
    92 GFLOP/s, its 28-pixel rows at stride 2 1.74 -> 1.36 ms), so it is left for K that does not split
    into 4 vectors. Then 3 × 4 where K splits into 3 vectors: 1 × 12 read 12 input values for each weight
    vector (the AVX2 build, against 1 × 12 or 2 × 6: 96 -> 24 1×1 at 56×56 0.66, 88 -> 24 3×3 0.90, 144 -> 48
    1×1 0.88, 480 -> 144 1×1 0.94)."""
    if registers >= 32:
        return (2, 12) if k_blocks % 2 == 0 else (1, 16)
    if k_blocks % 4 == 0:
        return 4, 3
    if k_blocks % 3 == 0:
        return 3, 4
    return (2, 6) if k_blocks % 2 == 0 else (1, 12)


@dataclass(frozen=True)
class PixelRun:
    """`count` equal blocks of n output pixels of a row from column `start` (a C loop when repeated); last: its
    last column, end: one past."""
    start: int
    n: int
    count: int
    repeated: bool
    last: int
    end: int


def row_segments(col_lo: list[int], col_hi: list[int], kw: int, pb: int) -> list[tuple[dict, list | None]]:
    """Cut an output row into blocks of at most `pb` pixels: per run of blocks, the PixelRun fields and the
    mask — None when every tap of every pixel lies inside the input, else per kernel column the pixels
    (0..n-1) whose tap does. Consecutive equal interior blocks run as one C loop."""
    ow = len(col_lo)
    blocks = []
    for start in range(0, ow, pb):
        n = min(pb, ow - start)
        mask = [[j for j in range(n) if col_lo[start + j] <= t < col_hi[start + j]] for t in range(kw)]
        full = all(len(m) == n for m in mask)
        blocks.append({"start": start, "n": n, "count": 1, "mask": None if full else mask})
    runs: list[dict] = []
    for b in blocks:
        last = runs[-1] if runs else None
        if last and b["mask"] is None and last["mask"] is None and last["n"] == b["n"]:
            last["count"] += 1
        else:
            runs.append(b)
    return [({"start": r["start"], "n": r["n"], "count": r["count"], "repeated": r["count"] > 1,
              "last": r["start"] + r["count"] * r["n"] - 1, "end": r["start"] + r["count"] * r["n"]}, r["mask"])
            for r in runs]


def pack_filter_blocks(weights: dict[str, np.ndarray], block: int,
                       blocks: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """Filters zero-padded to whole blocks of `block` (at least `blocks` of them), the filter index innermost:
    [K/block][C][FH][FW][block], so one vector load reads a tap of `block` filters. Returns (packed weight,
    zero-padded bias, blocks)."""
    k, c, kh, kw = weights["weight"].shape
    k_blocks = max(-(-k // block), blocks)
    packed = np.zeros((k_blocks * block, c, kh, kw), np.float32)
    packed[:k] = weights["weight"]
    packed = packed.reshape(k_blocks, block, c, kh, kw).transpose(0, 2, 3, 4, 1)
    bias = np.zeros(k_blocks * block, np.float32)
    if "bias" in weights:
        bias[:k] = weights["bias"]
    return packed, bias, k_blocks


def valid_range(out: int, size: int, stride: int, shift: int) -> tuple[int, int]:
    """Output indices [lo, hi) with 0 <= o·stride + shift < size (empty: lo == hi)."""
    valid = [o for o in range(out) if 0 <= o * stride + shift < size]
    return (valid[0], valid[-1] + 1) if valid else (0, 0)


@dataclass(frozen=True)
class ColumnTap:
    """Window column j: output columns lo..last (hi one past) read input column ow·SW + offset, inside the input."""
    j: int
    lo: int
    hi: int
    last: int
    offset: int


def column_taps(g: dict[str, Any]) -> tuple[ColumnTap, ...]:
    """Per window column of a pool's geometry (WindowParams fields), the output columns whose tap is inside."""
    taps = []
    for j in range(g["KW"]):
        offset = j * g["DW"] - g["PL"]
        lo, hi = valid_range(g["OW"], g["W"], g["SW"], offset)
        if lo < hi:
            taps.append(ColumnTap(j, lo, hi, hi - 1, offset))
    return tuple(taps)


@dataclass(frozen=True)
class Offset:
    """An unrolled index (a pixel j, a filter vector v, ...) and the literal offset of what it reads or writes."""
    index: int
    offset: int


@dataclass(frozen=True)
class Phase:
    """Column phase q of a row split by the stride: buffer column j holds input column j·SW + shift
    (shift = q − PL), which lies inside the input for lo <= j < hi (the rest is zero padding): `count`
    columns, the last one `last`, the first reading input column `first_input`."""
    q: int
    lo: int
    hi: int
    shift: int
    filled: bool  # lo < hi
    count: int
    last: int
    first_input: int


def phases(row_len: int, sw: int, pl: int, w: int) -> tuple[Phase, ...]:
    """Per column phase q: the buffer indices j with 0 <= j·SW + q − PL < W (the rest is zero padding)."""
    out = []
    for q in range(sw):
        valid = [j for j in range(row_len) if 0 <= j * sw + q - pl < w]
        lo, hi = (valid[0], valid[-1] + 1) if valid else (0, 0)
        out.append(Phase(q, lo, hi, q - pl, lo < hi, hi - lo, hi - 1, lo * sw + q - pl))
    return tuple(out)


@dataclass(frozen=True)
class ShufflePair:
    lo: int
    hi: int


@dataclass(frozen=True)
class TransposeStage:
    """One stage of the in-register transpose: the vector pairs (p, p + d) and the lane indices of the new
    vectors (two-input __builtin_shufflevector, the second at +lanes)."""
    d: int
    pairs: tuple[ShufflePair, ...]
    lo: tuple[int, ...]
    hi: tuple[int, ...]


def transpose_stages(lanes: int) -> tuple[TransposeStage, ...]:
    """Shuffles that transpose `lanes` vectors of `lanes` floats: per stage d (a power of 2) and pair of
    vectors (p, p + d) with p & d == 0, the lane indices (two-input __builtin_shufflevector, b at +lanes) of
    the new p and p + d: lanes i with i & d take the other vector's lane i ∓ d, so bit d of the vector index
    and of the lane index trade places; after every bit, vector l holds lane l of each input."""
    stages = []
    d = 1
    while d < lanes:
        lo = tuple(lanes + i - d if i & d else i for i in range(lanes))
        hi = tuple(lanes + i if i & d else i + d for i in range(lanes))
        stages.append(TransposeStage(d, tuple(ShufflePair(p, p + d) for p in range(lanes) if not p & d), lo, hi))
        d *= 2
    return tuple(stages)
