"""pointwise: a 1×1, stride 1, unpadded convolution as a matrix product Y[K][P] = W[K][C]·X[C][P]
(templates/ops/conv2d_pointwise.c.j2).

Vectors run along the P = H·W pixels (contiguous in C×H×W); each step multiplies NR pixel vectors by MR
broadcast weights, MR·NR accumulators in registers (weights packed [K/MR][C][MR]).
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
class PointwiseParams(ConvParams):
    VL: int  # pixels per vector
    VECTOR_BYTES: int
    MR: int  # filters per register block
    NR: int  # pixel vectors per register block (a chunk)
    KB: int  # blocks of MR filters (K zero-padded)
    LAST_KB: int
    LASTN: int  # filters in the last block
    PARTIAL_LAST: bool  # LASTN < MR
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
        span = pixel_span(c, nr * lanes, chunks_with_tail, target)
        spans = -(-chunks_with_tail // span)
        return PointwiseParams(
            **geometry, VL=lanes, VECTOR_BYTES=4 * lanes, MR=mr, NR=nr, KB=k_blocks, LAST_KB=k_blocks - 1,
            LASTN=lastn, PARTIAL_LAST=lastn != mr, BIAS_FLOATS=k_blocks * mr, P=p, CHUNKS=chunks,
            CHUNK_FLOATS=nr * lanes, chunk_vectors=tuple(Offset(r, r * lanes) for r in range(nr)),
            TAIL_VECS=tail_vecs, TAIL_START=chunks * nr * lanes,
            tail_vectors=tuple(Offset(r, r * lanes) for r in range(tail_vecs)), PARTIAL=partial,
            NCH=chunks_with_tail, SPAN=span, SPANS=spans, ITEMS=k_blocks * spans,
            pixels_outer=reread_weights < reread_input, PIN_INPUT=pin_condition(target, mr * nr + nr + 1),
            parallel=layer.spec.macs(layer, in_shapes, out_shape) >= PARALLEL_MACS)

    def arrays(self, layer, weights, params):
        packed, bias, _ = pack_filter_blocks(conv_weights(weights), params.MR)  # [K/MR][C][1][1][MR]
        return {"weight": packed, "bias": bias}

    def uses_thread_pool(self, params):
        return True
