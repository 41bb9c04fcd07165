"""The fast conv2d kernels of opt_level 2: which one a layer gets, its packed weights and its integers.

- 1×1, stride 1, no padding: `conv2d_pointwise` — a matrix product with vectors along the pixels;
- groups = 1 with at most 8 input channels (first layers): `conv2d_rowvec` — vectors along the output row;
- other groups = 1: `conv2d_blocked` — register-blocked direct convolution, VL output channels per vector
  (weights packed [K/VL][C][KH][KW][VL]), KV vectors × PB output pixels of accumulators in registers,
  border columns split from the interior so interior blocks run without bounds tests;
- groups = C = K (depthwise): `conv2d_depthwise` — per channel a zero-padded copy of the plane, 8 output rows at a time;
  on channel-blocked tensors (compiler/layouts.py) `conv2d_depthwise_blocked` — vectors of L channels, any map width;
- other groupings keep the plain kernel.
"""
from __future__ import annotations

import numpy as np

from ..target import Target

PARALLEL_MACS = 1 << 20  # below this (~10 µs of work) a layer runs on the caller's thread alone
STACK_BUFFER_BYTES = 96 * 1024  # a kernel's copy of its input rows lives on the stack: bigger ones take another kernel


def cache_bytes(target: Target) -> int:
    """Data this size stays in a core's L2 (about half of it) between passes."""
    return target.l2_bytes // 2


def block_shape(k_blocks: int, registers: int) -> tuple[int, int]:
    """(KV vectors of output channels, PB output pixels) per register block: KV·PB accumulators
    plus KV weights and one input value fit the vector registers (32 with AVX-512, 16 with AVX2)."""
    kv = 2 if k_blocks % 2 == 0 else 1
    if registers >= 32:
        return kv, (12 if kv == 2 else 16)
    return kv, (6 if kv == 2 else 12)


def row_segments(col_lo: list[int], col_hi: list[int], kw: int, pb: int) -> list[dict]:
    """Cut an output row into blocks of at most `pb` pixels.

    Each segment: start column, n pixels, count (consecutive equal blocks run as one C loop) and
    mask — None when every tap of every pixel lies inside the input, else per kernel column the
    pixels (0..n-1) whose tap does.
    """
    ow = len(col_lo)
    blocks = []
    for start in range(0, ow, pb):
        n = min(pb, ow - start)
        mask = [[j for j in range(n) if col_lo[start + j] <= t < col_hi[start + j]] for t in range(kw)]
        full = all(len(m) == n for m in mask)
        blocks.append({"start": start, "n": n, "count": 1, "mask": None if full else mask})
    segments: list[dict] = []
    for b in blocks:
        last = segments[-1] if segments else None
        if last and b["mask"] is None and last["mask"] is None and last["n"] == b["n"]:
            last["count"] += 1
        else:
            segments.append(b)
    return segments


def pack_filter_blocks(weights: dict[str, np.ndarray], block: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Filters zero-padded to whole blocks of `block`, the filter index innermost: [K/block][C][FH][FW][block],
    so one vector load reads a tap of `block` filters. Returns (packed weight, zero-padded bias, blocks)."""
    k, c, kh, kw = weights["weight"].shape
    k_blocks = -(-k // block)
    packed = np.zeros((k_blocks * block, c, kh, kw), np.float32)
    packed[:k] = weights["weight"]
    packed = packed.reshape(k_blocks, block, c, kh, kw).transpose(0, 2, 3, 4, 1)
    bias = np.zeros(k_blocks * block, np.float32)
    if "bias" in weights:
        bias[:k] = weights["bias"]
    return packed, bias, k_blocks


def blocked_lowering(args: dict, weights: dict[str, np.ndarray], macs: int, target: Target, x_lanes: int = 0,
                     y_lanes: int = 0):
    """args: the plain conv2d kernel_args (+ residual / act). x_lanes, y_lanes: the input's and the output's
    layout (0: C×H×W, L: channel-blocked [C/L][H][W][L]; a residual is laid out like the output).
    Returns (template, arrays, args)."""
    k, c, kh, kw = weights["weight"].shape
    lanes = min(8, target.lanes) if k <= 8 else target.lanes  # few filters: half-width vectors waste fewer lanes
    if y_lanes and (y_lanes != lanes or k % lanes):
        raise ValueError(f"a channel-blocked output needs {lanes}-lane blocks and K a multiple of them, got "
                         f"{y_lanes} lanes for K = {k}")
    packed, bias, k_blocks = pack_filter_blocks(weights, lanes)
    kv, pb = block_shape(k_blocks, target.vector_registers)
    # Loop order: which would be re-read from beyond L2 more, the input (once per channel group)
    # or the weights (once per output row)?
    input_bytes, weight_bytes = 4 * c * args["H"] * args["W"], 4 * packed.size
    reread_input = input_bytes * (k_blocks // kv) if input_bytes > cache_bytes(target) else 0
    reread_weights = weight_bytes * args["OH"] if weight_bytes > cache_bytes(target) else 0
    out = dict(args, VL=lanes, KB=k_blocks, KV=kv, PB=pb, CKK=c * kh * kw, LASTN=k - (k_blocks - 1) * lanes,
               OHW=args["OH"] * args["OW"], segments=row_segments(args["col_lo"], args["col_hi"], kw, pb),
               parallel=macs >= PARALLEL_MACS,
               rows_outer=reread_weights < reread_input, ITEMS=(k_blocks // kv) * args["OH"],
               XB=x_lanes, XS=x_lanes or 1, YB=y_lanes)
    return "ops/conv2d_blocked.c.j2", {"weight": packed, "bias": bias}, out


# Below this many pixels a 1×1 conv takes the blocked kernel: vectors along the output channels, whose
# lanes stay full where a 14×14 or 7×7 map leaves the pointwise kernel's pixel vectors part empty
# (MobileNetV2's 7×7 and 14×14 layers: 6-15% faster).
POINTWISE_MIN_PIXELS = 256


def pointwise_lowering(args: dict, weights: dict[str, np.ndarray], macs: int, target: Target):
    """1×1, stride 1, no padding: Y[K][P] = W[K][C]·X[C][P] with vectors along the pixels."""
    lanes = target.lanes
    k, c = weights["weight"].shape[:2]
    mr, nr = (8, 3) if target.vector_registers >= 32 else (4, 3)  # MR·NR accumulators: 24 of 32, 12 of 16
    packed, bias, k_blocks = pack_filter_blocks(weights, mr)  # [K/MR][C][1][1][MR]
    p = args["H"] * args["W"]
    chunks = p // (nr * lanes)
    partial = p % lanes  # pixels in the last, partly filled vector
    tail_vecs = (p - chunks * nr * lanes) // lanes + (partial > 0)
    input_bytes, weight_bytes = 4 * c * p, 4 * packed.size
    reread_input = input_bytes * k_blocks if input_bytes > cache_bytes(target) else 0
    reread_weights = weight_bytes * chunks if weight_bytes > cache_bytes(target) else 0
    out = dict(args, VL=lanes, MR=mr, NR=nr, KB=k_blocks, LASTN=k - (k_blocks - 1) * mr, P=p, CHUNKS=chunks,
               TAIL_VECS=tail_vecs, PARTIAL=partial,
               pixels_outer=reread_weights < reread_input, parallel=macs >= PARALLEL_MACS,
               NCH=chunks + (tail_vecs > 0), ITEMS=k_blocks * (chunks + (tail_vecs > 0)))
    return "ops/conv2d_pointwise.c.j2", {"weight": packed, "bias": bias}, out


ROWVEC_MAX_CHANNELS = 8  # up to this many input channels, vectors along the output row beat the blocked kernel


def _phases(row_len: int, sw: int, pl: int, w: int) -> list[dict]:
    """Per column phase q: the buffer indices j with 0 <= j·SW + q − PL < W (the rest is zero padding)."""
    phases = []
    for q in range(sw):
        valid = [j for j in range(row_len) if 0 <= j * sw + q - pl < w]
        lo, hi = (valid[0], valid[-1] + 1) if valid else (0, 0)
        phases.append({"q": q, "lo": lo, "hi": hi})
    return phases


def _rowvec_row_len(args: dict, lanes: int) -> int:
    """Floats per phase of one row copy of the row-vector kernel."""
    return -(-args["OW"] // lanes) * lanes + (args["KW"] - 1) * args["DW"] // args["SW"] + 1


def rowvec_fits(args: dict, target: Target) -> bool:
    """Whether the row-vector kernel's row copies (C·KH rows of SW phases) fit STACK_BUFFER_BYTES."""
    return 4 * args["C"] * args["KH"] * args["SW"] * _rowvec_row_len(args, target.lanes) <= STACK_BUFFER_BYTES


def rowvec_lowering(args: dict, weights: dict[str, np.ndarray], macs: int, target: Target):
    """Few input channels: vectors along the output row from zero-padded, phase-split row copies (the copies
    must fit: rowvec_fits)."""
    lanes = target.lanes
    k, c, kh, kw = weights["weight"].shape
    mr, nr = (8, 2) if target.vector_registers >= 32 else (4, 2)  # MR·NR accumulators: 16 of 32, 8 of 16
    packed, bias, k_blocks = pack_filter_blocks(weights, mr)
    ow = args["OW"]
    vectors = -(-ow // lanes)
    segments: list[dict] = []  # runs of equal full segments become one C loop (count > 1)
    for first in range(0, vectors, nr):
        n = min(nr, vectors - first)
        last_pixels = ow - (first + n - 1) * lanes
        seg = {"start": first * lanes, "nr": n, "partial": last_pixels if last_pixels < lanes else 0, "count": 1}
        last = segments[-1] if segments else None
        if last and not last["partial"] and not seg["partial"] and last["nr"] == n:
            last["count"] += 1
        else:
            segments.append(seg)
    if not rowvec_fits(args, target):
        raise ValueError("the row-vector kernel's row copies do not fit STACK_BUFFER_BYTES")
    sw, row_len = args["SW"], _rowvec_row_len(args, lanes)
    out = dict(args, VL=lanes, MR=mr, KB=k_blocks, LASTN=k - (k_blocks - 1) * mr, OHW=args["OH"] * ow,
               segments=segments, RL=row_len, phases=_phases(row_len, sw, args["PL"], args["W"]),
               parallel=macs >= PARALLEL_MACS)
    return "ops/conv2d_rowvec.c.j2", {"weight": packed, "bias": bias}, out


def valid_range(out: int, size: int, stride: int, shift: int) -> tuple[int, int]:
    """Output indices [lo, hi) with 0 <= o·stride + shift < size (empty: lo == hi)."""
    valid = [o for o in range(out) if 0 <= o * stride + shift < size]
    return (valid[0], valid[-1] + 1) if valid else (0, 0)


DEPTHWISE_ROWS = 8  # output rows computed together: 8 independent accumulators cover the FMA latency
DEPTHWISE_CHANNELS = 8  # planes copied before the first is read (within STACK_BUFFER_BYTES)


def depthwise_lowering(args: dict, weights: dict[str, np.ndarray], macs: int, target: Target):
    """Vector path: a zero-padded, phase-split copy of each channel plane (PR rows of SW phases of RL
    columns) and DEPTHWISE_ROWS output rows at a time. Portable path: per kernel tap the rectangle of
    output pixels it reaches inside the input, with its input offset. None: the plane is too big."""
    taps = []
    for kh in range(args["KH"]):
        oh_lo, oh_hi = valid_range(args["OH"], args["H"], args["SH"], kh * args["DH"] - args["PT"])
        for kw in range(args["KW"]):
            ow_lo, ow_hi = valid_range(args["OW"], args["W"], args["SW"], kw * args["DW"] - args["PL"])
            if oh_lo < oh_hi and ow_lo < ow_hi:
                offset = (kh * args["DH"] - args["PT"]) * args["W"] + kw * args["DW"] - args["PL"]
                taps.append({"kh": kh, "kw": kw, "index": kh * args["KW"] + kw, "oh_lo": oh_lo, "oh_hi": oh_hi,
                             "ow_lo": ow_lo, "ow_hi": ow_hi, "offset": offset})
    lanes = target.lanes
    oh, ow, sw = args["OH"], args["OW"], args["SW"]
    full_blocks, last_cols = divmod(ow, lanes)
    row_len = (full_blocks + (last_cols > 0)) * lanes + (args["KW"] - 1) * args["DW"] // sw + 1  # per phase
    plane_rows = (oh - 1) * args["SH"] + (args["KH"] - 1) * args["DH"] + 1  # padded input rows the taps read
    plane_bytes = 4 * plane_rows * sw * row_len
    if plane_bytes > STACK_BUFFER_BYTES:
        return None
    rows = min(DEPTHWISE_ROWS, oh)
    channel_block = max(1, min(DEPTHWISE_CHANNELS, STACK_BUFFER_BYTES // plane_bytes, args["C"]))
    phases = _phases(row_len, sw, args["PL"], args["W"])
    # Stride 2: input columns 2·VL at a time split into even and odd with vector shuffles. Even columns
    # i go to phase (i + PL) % 2 at j = (i + PL) // 2, odd ones to the other phase.
    even_q, split_blocks, even_lo, odd_lo = args["PL"] % 2, 0, 0, 0
    if sw == 2:
        even, odd = phases[even_q], phases[1 - even_q]
        even_lo, odd_lo = even["lo"], odd["lo"]
        if even_lo == args["PL"] // 2 and odd_lo == (args["PL"] + 1) // 2:
            split_blocks = min(args["W"] // (2 * lanes), (even["hi"] - even_lo) // lanes, (odd["hi"] - odd_lo) // lanes)
    # Split across threads from an eighth of the usual size up: the channels a thread reads are mostly the
    # ones it just wrote (templates/threads.c.j2), and on one thread half of them sit in the other core's cache.
    out = dict(args, taps=taps, OHW=oh * ow, parallel=macs >= PARALLEL_MACS // 8, VL=lanes, RL=row_len,
               phases=phases, SPLIT_BLOCKS=split_blocks, EVEN_Q=even_q,
               EVEN_LO=even_lo, ODD_LO=odd_lo, PR=plane_rows, R=rows, CB=channel_block,
               COPY_ROWS=max(0, min(args["H"], plane_rows - args["PT"])),  # input rows inside the plane
               ROW_GROUPS=oh // rows, LAST_ROWS=oh % rows, FULL_BLOCKS=full_blocks, LAST_COLS=last_cols)
    return "ops/conv2d_depthwise.c.j2", dict(weights), out


DEPTHWISE_PIXELS = 8  # output pixels of a row computed together on channel-blocked tensors


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


def depthwise_blocked_lowering(args: dict, weights: dict[str, np.ndarray], macs: int, lanes: int,
                               y_lanes: int):
    """Depthwise on a channel-blocked input ([C/L][H][W][L]): one vector holds a pixel of L channels, so every
    lane is used whatever the map's width. A row's output pixels a register block at a time (DEPTHWISE_PIXELS
    for a blocked output; L for a C×H×W one, whose L×L tile is transposed before the stores); per kernel row
    each input column is loaded once and used by every tap that reads it; border blocks list only the taps
    inside the input (row_segments), rows take theirs from row_lo/row_hi. y_lanes: the output's (and a
    residual's) layout, L or 0 (C×H×W)."""
    c, kh, kw = args["C"], args["KH"], args["KW"]
    if c % lanes:
        raise ValueError(f"channel-blocked depthwise needs C a multiple of {lanes}, got C = {c}")
    packed = weights["weight"].reshape(c // lanes, lanes, kh, kw).transpose(0, 2, 3, 1)  # [C/L][KH][KW][L]
    bias = weights["bias"] if "bias" in weights else np.zeros(c, np.float32)
    if y_lanes not in (0, lanes):
        raise ValueError(f"channel-blocked depthwise writes {lanes}-lane blocks or C×H×W, not {y_lanes} lanes")
    segments = row_segments(args["col_lo"], args["col_hi"], kw, DEPTHWISE_PIXELS if y_lanes else lanes)
    for seg in segments:
        seg["loads"] = column_loads(seg, kw, args["SW"], args["DW"])
    out = dict(args, VL=lanes, CB=c // lanes, OHW=args["OH"] * args["OW"], segments=segments,
               parallel=macs >= PARALLEL_MACS // 8, YB=y_lanes, transpose=transpose_stages(lanes))
    return "ops/conv2d_depthwise_blocked.c.j2", {"weight": packed, "bias": bias}, out
