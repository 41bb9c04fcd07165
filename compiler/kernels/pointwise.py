"""pointwise: a 1×1, stride 1, unpadded convolution as a matrix product Y[K][P] = W[K][C]·X[C][P]
(templates/ops/conv2d_pointwise.c.j2).

Vectors run along the P = H·W pixels (contiguous in C×H×W); each step multiplies NR pixel vectors by MR
broadcast weights, MR·NR accumulators in registers (weights packed [K/MR][C][MR]).

With 16 registers, where many input channels meet few filters (uses_panel), an item is one chunk of pixels: its
input rows are copied into a contiguous panel (per chunk of input channels that fits half of L1) which every
filter block then reads from L1.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import KERNELS, Kernel, register_kernel
from .common import (PARALLEL_MACS, ConvParams, Offset, cache_bytes, conv_fields, conv_weights, pack_filter_blocks,
                     pin_condition)
from .direct import CONV_OPS

# Below this many pixels a 1×1 conv takes the direct kernel: vectors along the output channels, whose
# lanes stay full where a 14×14 or 7×7 map leaves the pixel vectors part empty
# (MobileNetV2's 7×7 and 14×14 layers: 6-15% faster).
POINTWISE_MIN_PIXELS = 256


@dataclass(frozen=True)
class FilterRow:
    """Row m of a register block of MR filters: `stored` is the C condition under which the filter exists (""
    always; rows past LASTN exist in every block but the last), `reload` the one under which a panel past the
    first reloads its partial sums."""
    index: int
    stored: str
    reload: str


def filter_rows(mr: int, lastn: int, last_kb: int) -> tuple[FilterRow, ...]:
    rows = []
    for m in range(mr):
        stored = f"kb != {last_kb}" if m >= lastn else ""
        rows.append(FilterRow(m, stored, f"c0 && {stored}" if stored else "c0"))
    return tuple(rows)


@dataclass(frozen=True)
class PointwiseParams(ConvParams):
    VL: int  # pixels per vector
    VECTOR_BYTES: int
    MR: int  # filters per register block
    NR: int  # pixel vectors per register block (a chunk)
    KB: int  # blocks of MR filters (K zero-padded)
    LAST_KB: int
    LASTN: int  # filters in the last block
    PARTIAL_LAST: bool  # LASTN < MR
    filter_rows: tuple[FilterRow, ...]
    BIAS_FLOATS: int  # KB·MR
    P: int  # pixels
    CHUNKS: int  # whole chunks of NR vectors
    CHUNK_FLOATS: int  # NR·VL
    chunk_vectors: tuple[Offset, ...]  # per vector r of a chunk: r·VL
    TAIL_VECS: int  # vectors after the chunks, the last PARTIAL pixels full if PARTIAL > 0
    TAIL_START: int
    tail_vectors: tuple[Offset, ...]
    PARTIAL: int
    NCH: int  # chunks per filter block, the tail counted
    SPAN: int  # chunks per item (pixel_span)
    SPANS: int  # spans of chunks per filter block: ceil(NCH / SPAN)
    ITEMS: int  # KB·SPANS (filter block, span) pairs
    pixels_outer: bool  # items run pixel spans outermost (the weights stay in cache, the input would not)
    PIN_INPUT: str  # the C condition under which a step's NR pixel vectors are held in registers ("": never)
    PANEL: bool  # items are single chunks whose input rows are packed into a panel for all filter blocks
    C_CHUNK: int  # input channels per panel (C: one panel a chunk)
    C_CHUNKS: int  # panels per chunk of pixels
    PARTIAL_SUMS: bool  # C_CHUNKS > 1: past the first panel, the blocks go on from their partial sums in y
    TAIL_FLOATS: int  # pixels in the last chunk when it is the short tail (P - TAIL_START)
    TAIL_ZEROS: int  # CHUNK_FLOATS - TAIL_FLOATS: the tail's panel rows are zero after its pixels
    parallel: bool


def register_block(target) -> tuple[int, int]:
    """(MR filters, NR pixel vectors): MR·NR accumulators, 24 of 32 vector registers or 12 of 16. With 16, 6 × 2
    (a register block's output rows are 64 bytes, a cache line) with its pixel vectors pinned in registers
    (pin_condition): a 64 -> 256 1×1 conv with a residual at 56×56, in a standalone copy of the loop on an
    AVX2-only Zen 3, ran at 54 GFLOP/s where 4 × 3 with pinned vectors ran at 47, both over spans of pixels."""
    return (8, 3) if target.vector_registers >= 32 else (6, 2)


# With 16 registers, an item computes one filter block over a span of pixel chunks whose input, C·span pixels,
# takes at most SPAN_L2_SHARE of L2 and stays there for the next filter block. One chunk an item wrote each
# output row 64-96 bytes at a time, 6 rows per block, 256 rows in flight across a pixel chunk at 56×56, which
# the prefetchers do not follow: 64 -> 256 with a residual at 56×56, standalone loop, AVX2 Zen 3: 25 GFLOP/s in
# chunks, 47-54 over spans of 8-24 chunks. 32 registers (AVX-512) keep one chunk an item: not measured there.
SPAN_L2_SHARE = 0.25


# The panel: read in place, a chunk's input rows are C lines H·W floats apart (2 per row where H·W is not a
# multiple of 16), which miss L1 and cross a page each; every filter block read them again from L2. Packed
# once into a contiguous panel they stay in L1 for all the blocks, but a chunk then writes all K output rows
# at once, each to its own line. In-model, AVX2 Zen 3, panel against the spans (one-process A/B, per layer):
# SqueezeNet 1.0's squeeze layers (256-512 -> 32-64 at 27×27) 0.80-0.89, Inception v3's 35×35 1×1s (192-288 ->
# 32-64) 0.76-0.91; but SqueezeNet's expand layers (16-64 -> 64-256) 1.1-1.6 and DenseNet's 128-512 -> 128 at
# 28×28 and 56×56 0.9-1.09. So panels only where many input rows meet few output rows; the weights, read once per
# chunk, must stay in L2.
PANEL_MIN_BLOCKS = 4  # the copy costs a pass over the chunk's input: several filter blocks must share it
PANEL_MAX_FILTERS = 64
PANEL_MIN_CHANNELS_PER_FILTER = 2
PANEL_L1_SHARE = 0.5  # a panel (one chunk's rows of C_CHUNK channels) fills at most half of L1


def panel_channels(c: int, chunk_floats: int, target) -> tuple[int, int]:
    """(C_CHUNK, C_CHUNKS): the input channels split into equal panels of at most PANEL_L1_SHARE of L1."""
    most = max(1, int(PANEL_L1_SHARE * target.l1d_bytes) // (4 * chunk_floats))
    chunks = -(-c // most)
    return -(-c // chunks), chunks


def uses_panel(c: int, k: int, k_blocks: int, weight_bytes: int, target) -> bool:
    """Whether each chunk's input is packed into a panel (16 registers only: not measured with 32, whose items
    are single chunks of 8 × 3 already)."""
    return (target.vector_registers < 32 and k_blocks >= PANEL_MIN_BLOCKS and k <= PANEL_MAX_FILTERS
            and c >= PANEL_MIN_CHANNELS_PER_FILTER * k and weight_bytes <= cache_bytes(target))


def pixel_span(c: int, chunk_pixels: int, chunks: int, target) -> int:
    """Chunks per item: as many as keep C·span pixels of input within SPAN_L2_SHARE of L2 (1 with 32 registers)."""
    if target.vector_registers >= 32:
        return 1
    fit = int(SPAN_L2_SHARE * target.l2_bytes) // (4 * c * chunk_pixels)
    return max(1, min(chunks, fit))


@register_kernel
class Pointwise(Kernel):
    name = "pointwise"
    ops = CONV_OPS
    template = "ops/conv2d_pointwise.c.j2"
    priority = 50

    def unsuitable(self, layer, in_shapes, out_shape, target):
        a = layer.attrs
        if a.groups != 1 or a.kernel != (1, 1) or a.stride != (1, 1):
            return "it computes 1×1, stride-1 convolutions with groups = 1 only"
        if tuple(out_shape[1:]) != tuple(in_shapes[0][1:]):
            return "it computes unpadded convolutions only (the output map must be the input's)"
        return None

    def wanted(self, layer, in_shapes, out_shape, target):
        pixels = out_shape[1] * out_shape[2]
        if pixels < POINTWISE_MIN_PIXELS:
            return None  # vectors along the pixels would be part empty: the direct kernel
        return f"1×1 conv on {pixels} ≥ {POINTWISE_MIN_PIXELS} pixels: a matrix product along the pixels"

    def blocked_io(self, layer, in_shapes, out_shape, target):
        """Where its output is channel-blocked, the direct kernel takes the layer (refine), reading a blocked
        input only then."""
        if out_shape[0] % target.lanes or any(tuple(s) != tuple(out_shape) for s in in_shapes[1:]):
            return None
        return ("if_out",) + ("same",) * (len(in_shapes) - 1)

    def refine(self, layer, in_shapes, out_shape, target, layouts):
        if any(layouts):
            return KERNELS["direct"], "1×1 conv between channel-blocked tensors: the direct kernel stores whole vectors"
        return None

    def params(self, layer, in_shapes, out_shape, target, layouts):
        geometry = conv_fields(layer, in_shapes, out_shape)
        lanes = target.lanes
        k, c = layer.attrs.filters, in_shapes[0][0]
        mr, nr = register_block(target)
        k_blocks = -(-k // mr)
        p = geometry["HW"]
        chunks = p // (nr * lanes)
        partial = p % lanes  # pixels in the last, partly filled vector
        tail_vecs = (p - chunks * nr * lanes) // lanes + (partial > 0)
        input_bytes, weight_bytes = 4 * c * p, 4 * k_blocks * mr * c
        reread_input = input_bytes * k_blocks if input_bytes > cache_bytes(target) else 0
        reread_weights = weight_bytes * chunks if weight_bytes > cache_bytes(target) else 0
        lastn = k - (k_blocks - 1) * mr
        chunks_with_tail = chunks + (tail_vecs > 0)
        panel = uses_panel(c, k, k_blocks, weight_bytes, target)
        span = 1 if panel else pixel_span(c, nr * lanes, chunks_with_tail, target)
        spans = -(-chunks_with_tail // span)
        c_chunk, c_chunks = panel_channels(c, nr * lanes, target) if panel else (c, 1)
        return PointwiseParams(
            **geometry, VL=lanes, VECTOR_BYTES=4 * lanes, MR=mr, NR=nr, KB=k_blocks, LAST_KB=k_blocks - 1,
            LASTN=lastn, PARTIAL_LAST=lastn != mr, filter_rows=filter_rows(mr, lastn, k_blocks - 1),
            BIAS_FLOATS=k_blocks * mr, P=p, CHUNKS=chunks,
            CHUNK_FLOATS=nr * lanes, chunk_vectors=tuple(Offset(r, r * lanes) for r in range(nr)),
            TAIL_VECS=tail_vecs, TAIL_START=chunks * nr * lanes,
            tail_vectors=tuple(Offset(r, r * lanes) for r in range(tail_vecs)), PARTIAL=partial,
            NCH=chunks_with_tail, SPAN=span, SPANS=spans, ITEMS=spans if panel else k_blocks * spans,
            pixels_outer=reread_weights < reread_input, PIN_INPUT=pin_condition(target, mr * nr + nr + 1),
            PANEL=panel, C_CHUNK=c_chunk, C_CHUNKS=c_chunks, PARTIAL_SUMS=c_chunks > 1,
            TAIL_FLOATS=p - chunks * nr * lanes, TAIL_ZEROS=(chunks + 1) * nr * lanes - p,
            parallel=layer.spec.macs(layer, in_shapes, out_shape) >= PARALLEL_MACS)

    def arrays(self, layer, weights, params):
        packed, bias, _ = pack_filter_blocks(conv_weights(weights), params.MR)  # [K/MR][C][1][1][MR]
        return {"weight": packed, "bias": bias}

    def uses_thread_pool(self, params):
        return True
