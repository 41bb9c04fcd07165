"""direct: the register-blocked direct convolution for groups = 1 (templates/ops/conv2d_direct.c.j2).

The innermost step multiplies a vector of VL output channels (weights packed [K/VL][C][KH][KW][VL]) by one
input value per output pixel, for KV vectors × PB pixels of accumulators held in registers. Each output row
is cut into blocks of pixels; interior blocks loop over every tap, border blocks list only the taps inside
the input. It reads its input in either layout and writes, with whole vectors of filters, channel-blocked outputs (one
vector store per pixel) or C×H×W outputs through VL×VL tiles transposed in registers (vector stores); a
C×H×W output whose last vector is part empty is stored one value at a time. A layer whose register block's
weights outgrow L2 (with 16 registers, L1) takes its input channels in chunks (channel_chunks), each chunk
over several output rows.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import Kernel, register_kernel
from .common import (PARALLEL_MACS, ConvParams, Offset, PixelRun, block_shape, cache_bytes, conv_fields,
                     TransposeStage, conv_weights, pack_filter_blocks, pin_condition, row_segments, transpose_stages)

CONV_OPS = ("conv2d", "fused_conv2d")


@dataclass(frozen=True)
class MaskedTap:
    """In a border block: kernel column kw, the filter vectors' weight offsets, the pixels whose tap is inside."""
    kw: int
    weights: tuple[Offset, ...]  # per filter vector v: kw + v·C·KH·KW
    pixels: tuple[Offset, ...]  # per pixel j inside: (kw·DW + j·SW)·pixel stride


@dataclass(frozen=True)
class StoreChunk:
    """Up to VL pixels of a register block, from pixel `start`, stored to C×H×W through one VL×VL transpose:
    pixels: per tile row (index) the block's pixel (offset) it holds; zeros: the tile rows no pixel fills;
    partial: the pixels when fewer than VL (0: VL)."""
    start: int
    pixels: tuple[Offset, ...]
    zeros: tuple[int, ...]
    partial: int


def store_chunks(n: int, lanes: int) -> tuple[StoreChunk, ...]:
    """A block of n pixels as chunks of at most `lanes` pixels, each one transposed tile."""
    chunks = []
    for start in range(0, n, lanes):
        count = min(lanes, n - start)
        chunks.append(StoreChunk(start, tuple(Offset(i, start + i) for i in range(count)), tuple(range(count, lanes)),
                                 count if count < lanes else 0))
    return tuple(chunks)


@dataclass(frozen=True)
class StoreVector:
    """Filter vector `index` of a register block: per lane l, its channel plane's offset (v·VL + l)·OH·OW; the
    lanes from LASTN on (tail) exist only where this is not the last, part-filled filter vector."""
    index: int
    planes: tuple[Offset, ...]
    tail: tuple[Offset, ...] = ()

    @classmethod
    def of_block(cls, kv: int, lanes: int, ohw: int, lastn: int) -> tuple["StoreVector", ...]:
        return tuple(cls(v, tuple(Offset(l, (v * lanes + l) * ohw) for l in range(lastn)),
                         tuple(Offset(l, (v * lanes + l) * ohw) for l in range(lastn, lanes))) for v in range(kv))


def store_fields(transposed: bool, y_lanes: int, activation: tuple, kv: int, lanes: int, ohw: int,
                 lastn: int) -> dict:
    """The output-store fields of the direct and grouped kernels' records: a C×H×W output goes through
    in-register transposes (TRANSPOSE_STORE), the planes past the last filter skipped in the last vector;
    convc_splat and convc_ivec are needed by those and by a vector epilogue with an activation."""
    return dict(TRANSPOSE_STORE=transposed, store_vectors=StoreVector.of_block(kv, lanes, ohw, lastn),
                transpose=transpose_stages(lanes) if transposed else (),
                SPLAT=transposed or bool(y_lanes and activation), IVEC=bool((transposed or y_lanes) and activation))


@dataclass(frozen=True)
class PixelBlock(PixelRun):
    """Interior blocks read every tap (pixels: per pixel j its input offset j·SW·pixel stride); a border block
    lists only the taps inside the input (taps). chunks: a C×H×W output's transposed stores (TRANSPOSE_STORE)."""
    pixels: tuple[Offset, ...]
    taps: tuple[MaskedTap, ...] | None
    chunks: tuple[StoreChunk, ...] = ()


@dataclass(frozen=True)
class DirectParams(ConvParams):
    VL: int  # output channels per vector
    VECTOR_BYTES: int
    KB: int  # vectors of output channels (K zero-padded)
    KB_PACKED: int  # of them packed: KB, zero vectors completing the last register block (GROUPS·KV)
    KBG: int  # of them per group (one group: KB)
    LAST_KB: int  # the last vector's index within its group
    KV: int  # filter vectors per register block
    PB: int  # output pixels per register block
    GROUPS: int  # register blocks of filter vectors: ceil(KB / KV)
    PADDED: bool  # KV does not divide KB: the last register block ends in zero vectors, not stored
    padding_vectors: tuple[bool, ...]  # per filter vector v of a block: the last block's is zero padding
    PIN_WEIGHTS: str  # the C condition under which the block's weight vectors are held in registers ("": never)
    LASTN: int  # filters in the last vector
    PARTIAL_LAST: bool  # LASTN < VL
    CKK: int
    filter_vectors: tuple[Offset, ...]  # per filter vector v of a block: v·C·KH·KW (its weights' offset)
    XB: int  # the input's channel-blocked lanes (0: C×H×W)
    X_NESTED: bool  # XB and CG a multiple of it: the channel loop runs over blocks, then lanes
    CG_XBLOCKS: int  # CG / XB when X_NESTED
    X_BLOCK_FLOATS: int  # floats per block of XB input channels: H·W·XB
    CHANNEL_UNROLL: int  # the input-channel loop's unroll factor (channel_unroll; 0: GCC's choice)
    TAP_STEP: int  # floats between horizontal taps: DW · the input's pixel stride
    YB: int  # the output's (and residual's) channel-blocked lanes (0: C×H×W)
    Y_BLOCK_FLOATS: int  # floats per vector of output channels when blocked: OH·OW·VL
    segments: tuple[PixelBlock, ...]
    TRANSPOSE_STORE: bool  # a C×H×W output of whole vectors: VL×VL tiles transposed in registers, vector stores
    store_vectors: tuple[StoreVector, ...]
    transpose: tuple[TransposeStage, ...]
    SPLAT: bool  # the template needs convc_splat
    IVEC: bool  # and convc_ivec (a vector epilogue with an activation)
    ROWS_INSIDE: bool  # every output row has all KH kernel rows inside the input: literal kernel-row bounds
    rows_outer: bool  # items run output rows outermost (the input is too big to stay in cache; not when CHUNKED)
    CHUNKED: bool  # cache blocking: the input channels in chunks, partial sums kept between them
    CHUNK: int  # input channels per chunk (C when not chunked)
    CHUNK_BYTES: int  # a register block's weights for one chunk
    ROWS: int  # output rows per item
    ROW_ITEMS: int  # items per channel group: ceil(OH / ROWS)
    PART_VECTORS: int  # partial sums per item: KV·ROWS·OW vectors
    part_vectors: tuple[Offset, ...]  # per filter vector v: v·ROWS·OW, its partial sums' offset
    ITEMS: int
    parallel: bool


def pixel_blocks(geometry: dict, kv: int, pb: int, pixel_stride: int, ckk: int,
                 store_lanes: int = 0) -> tuple[PixelBlock, ...]:
    """An output row cut into register blocks of at most `pb` pixels (row_segments), for kernels with `kv`
    vectors of filters, `ckk` weights apart, per block; pixel_stride: floats between the input's pixels (its
    channel-blocked lanes, or 1); store_lanes: the vector width of a transposed C×H×W store (0: none)."""
    sw, dw, kw = geometry["SW"], geometry["DW"], geometry["KW"]
    segments = []
    for run, mask in row_segments(geometry["col_lo"], geometry["col_hi"], kw, pb):
        taps = None
        if mask is not None:
            taps = tuple(MaskedTap(t, tuple(Offset(v, t + v * ckk) for v in range(kv)),
                                   tuple(Offset(j, (t * dw + j * sw) * pixel_stride) for j in pixels))
                         for t, pixels in enumerate(mask) if pixels)
        segments.append(PixelBlock(**run, pixels=tuple(Offset(j, j * sw * pixel_stride) for j in range(run["n"])),
                                   taps=taps, chunks=store_chunks(run["n"], store_lanes) if store_lanes else ()))
    return tuple(segments)


# A one-tap (1×1) kernel's step per input channel is a single register block's FMAs (2 × 6 on AVX2: 2 weight
# loads, 6 broadcasts, 12 FMAs); GCC leaves that loop rolled, a branch and pointer updates per channel. Unrolled
# over a blocked input's lanes, measured on an AVX2-only Zen 3, 1 thread: ResNet-50's 256 -> 64 1×1 at 56×56
# (blocked in and out, 2 × 6; the generated function in a harness) 1.32-1.34 -> 1.12-1.14 ms (77 -> 90
# GFLOP/s). Not unrolled: a block that fills every register (AVX2's 3 × 4: 12 accumulators, 3 weights and a
# broadcast; unrolled, GCC spilled accumulators and the 64 -> 256 1×1 at 56×56 took 1.07-1.09 × the rolled
# time; a C×H×W input's loop unrolled 8 took 1.60 × with 3 × 4), a layer whose channels run in chunks
# (channel_chunks; ResNeXt-50's 1024 -> 1024 1×1s at 14×14 with 2 × 6: 1.09 unrolled, 0.94-0.95 rolled, both
# against 3 × 4 rolled), nor 32-register targets: GCC spills accumulators of AVX-512's unrolled 2 × 12 and
# 4 × 6 blocks to the stack (FMAs with stack operands in a ResNet bottleneck's 1×1 convs, none rolled); not
# timed on an AVX-512 host. A C×H×W input (each channel a plane of its own) is unrolled CHW_CHANNEL_UNROLL
# times: DenseNet-121's 1×1 convs of its first dense block (64-256 -> 128 at 56×56, reading the C×H×W concat)
# 0.85-0.94 of the rolled time and its first transition 0.80-0.85 (8: 0.90-1.00); the model 0.957.
CHW_CHANNEL_UNROLL = 4


def channel_unroll(khw: int, x_lanes: int, block_registers: int, chunked: bool, target) -> int:
    """The unroll factor of the input-channel loop: with 16 vector registers, for one-tap kernels whose register
    block (block_registers vector registers) leaves one spare and whose channels are not chunked, a blocked
    input's lanes (CHW_CHANNEL_UNROLL for a C×H×W input); else 0 (GCC's choice)."""
    unrolls = khw == 1 and block_registers < target.vector_registers < 32 and not chunked
    return (x_lanes or CHW_CHANNEL_UNROLL) if unrolls else 0


def block_cost(row: int, kv: int, pb: int) -> int:
    """FMA cycles per input channel, in units, of a row of `row` pixels cut into blocks of at most `pb`: a block of
    n pixels keeps n·kv accumulators, and fewer than 8 cannot hide the FMA latency (2 ports × 4 cycles)."""
    full, rest = divmod(row, pb)
    return full * max(pb * kv, 8) + (max(rest * kv, 8) if rest else 0)


# The longest row pixel_rows cuts, in pixels or register blocks, whichever allows more.
MAX_CUT_PIXELS = 64
MAX_CUT_BLOCKS = 16


def pixel_rows(geometry: dict, kv: int, pb: int) -> dict:
    """A 1×1, stride-1, unpadded conv reads and writes its pixels in one order, so its output rows can be any
    cut of the H·W pixels: the row length among the divisors of H·W from OW up to MAX_CUT_PIXELS or
    MAX_CUT_BLOCKS·pb whose register blocks cost least (block_cost; the shortest of equals, for more work
    items). A 7×7 map on AVX2 (3-pixel blocks) becomes one row of 49 pixels: 16 blocks of 3 and one of 1
    instead of 7 × (3 + 3 + 1). The pixel bound lets 3-pixel blocks reach 49: with 16 blocks alone they
    could not, and ResNet-50's 2048 -> 512 and 512 -> 2048 1×1 convs at 7×7 ran 10% slower (AVX2 build,
    85-87 -> 95-96 GFLOP/s)."""
    hw, ow = geometry["OHW"], geometry["OW"]
    rows = [d for d in range(ow, max(ow, MAX_CUT_PIXELS, MAX_CUT_BLOCKS * pb) + 1) if hw % d == 0]
    best = min(rows, key=lambda d: (hw // d * block_cost(d, kv, pb), d))
    if best == ow:
        return geometry
    n = hw // best
    return dict(geometry, H=n, W=best, OH=n, OW=best, row_lo=(0,) * n, row_hi=(1,) * n, col_lo=(0,) * best,
                col_hi=(1,) * best)


# AVX-512's register blocks besides block_shape's 2 × 12: 4 × 6 cuts 14-pixel rows 6 + 6 + 2 where 2 × 12
# cuts them 12 + 2. Where both fill a row equally (28 and 56 pixels), the first listed takes it: 4 × 6 makes
# 10 loads for 24 FMAs instead of 14 (fcn_resnet50, whose layer3, layer4 and head run at 28×28, 1 thread: 0.98).
# A C×H×W output is stored through one 16 × 16 transpose per filter vector and block, though: four tiles for 6
# pixels where 2 × 12 has two for 12, twice the code. Layers below TRANSPOSED_WIDE_CKK input values per output
# (C·KH·KW), where those stores weigh most in the run time, keep 2 × 12 first for a C×H×W output. Cold compile,
# AVX-512: DenseNet-121 7.0 -> 4.8 s (C 6.5 -> 4.2 MB), Inception v3 6.0 -> 4.5 s, GoogLeNet 6.1 -> 4.8 s;
# 1 thread: GoogLeNet 1.01, ResNet-50 and DenseNet-121 1.00; fcn_resnet50's 3×3 head (18,432) keeps 4 × 6.
WIDE_BLOCK_SHAPES = ((4, 6), (2, 12))
TRANSPOSED_WIDE_CKK = 4096

# AVX2's block for an even number of filter vectors that does not split into 4, under kernels wider than one
# column: GCC shares each input broadcast across the unrolled kernel columns, and 2 × 6's 12 accumulators
# leave it no registers for them. Measured on the AVX2 build, per layer against 2 × 6: LeNet-5's 5×5 conv
# 6 -> 16 at 14×14 0.70 (0.59 padded), 32 -> 16 5×5 0.69, 3×3 convs 0.95-0.96 (16 -> 16 at 14×14,
# 96 -> 16 at 56×56, 64 -> 48 at 28×28), 192 -> 80 3×3 at 14×14 1.02. 1×1 convs keep 2 × 6 (480 -> 112 at
# 14×14: 2 × 4 was 1.07).
# The grouped kernel takes the same block (narrow_wide_kernel): regnet_x_400mf's 3×3 convs of 16-filter groups,
# AVX2 build, 1 thread, per layer against 2 × 6: 0.62-0.68 at 56×56 and 28×28, 0.79-0.92 at 14×14.
# Strided convs wider than one column take it too, for any even number of filter vectors. AVX2-only Zen 3, 1 thread,
# per layer in alternating rounds against 4 × 3: ResNet-50's 3×3 stride-2 convs (blocked input; 28×28, 14×14 and
# 7×7 outputs) 0.82-0.94 (0.82-0.90 on 2 threads), AlexNet's 11×11/4 stem 0.83-0.84, ConvNeXt's 2×2/2
# downsampling convs 0.84-0.89, Inception v3's 3×3/2 in Mixed_7a 0.89-0.91; whole models 0.96-1.02 (the
# noise of this host where only a stem changes).
NARROW_WIDE_KERNEL_BLOCK = (2, 4)


def narrow_wide_kernel(shape: tuple[int, int], kw: int) -> tuple[int, int]:
    """block_shape's (KV, PB), with NARROW_WIDE_KERNEL_BLOCK for its 2 × 6 under kernels wider than one column."""
    return NARROW_WIDE_KERNEL_BLOCK if shape == (2, 6) and kw > 1 else shape


# AVX2 (16 registers), kernels one column wide (1×1, 7×1): register blocks whose weight vectors fit in registers
# beside the accumulators (common.pin_condition). The last register block is completed with zero filter vectors
# (not stored) where KV does not divide the filter vectors: 3 × 4 takes K = 256 as 11 blocks, one of them 1/3
# padding. direct_block_shape weighs that padding and how each block cuts the layer's rows (block_cost): 2 × 6
# leaves a 1-pixel block in a 7-pixel row where 3 × 4 leaves 3 (ResNeXt-50's 1024 -> 2048 1×1 at stride 2, 7×7
# output, took 1.37 × 3 × 4's time with 2 × 6). Measured on an AVX2-only Zen 3, 1 thread, per layer in
# alternating rounds: with the channel loop rolled, against 4 × 3 with its weights as FMA memory operands,
# ResNet-50's direct layers 0.77 with 3 × 4, 0.85 with 2 × 6 everywhere; then, with 2 × 6's loop unrolled
# (channel_unroll), this choice against 3 × 4 alone: ResNet-50's 256 -> 64 1×1s at 56×56 0.60-0.81 (3 runs),
# ResNeXt-50's 256 -> 128 0.79-0.81, the two models' 1×1s at 28×28 and 14×14 0.90-1.02, whole models 0.95 and
# 0.94. 3×3 convs keep 4 × 3 (ResNet-18's at stride 2 from C×H×W: 1.20 with 3 × 4). One filter vector takes
# 1 × 12 (ONE_VECTOR_BLOCK), the only block without padding; not timed against the others.
ONE_COLUMN_BLOCKS = ((2, 6), (3, 4))
ONE_VECTOR_BLOCK = (1, 12)


def direct_block_shape(k_blocks: int, registers: int, geometry: dict, pointwise: bool,
                       transposed_store: bool) -> tuple[tuple[int, int], dict]:
    """The register block (KV, PB), and the geometry it runs on (a stride-1 unpadded 1×1 conv's pixels re-cut
    into rows: pixel_rows). Of the candidates, the one with the least FMA time over the layer's rows: register
    blocks (the last one's zero padding counted) × rows × block_cost; the first of equals. With 32 registers,
    the WIDE_BLOCK_SHAPES that divide the filter vectors (2 × 12 first for a transposed store of C·KH·KW <
    TRANSPOSED_WIDE_CKK); with 16, for kernels one column wide, ONE_COLUMN_BLOCKS (ONE_VECTOR_BLOCK for one
    filter vector), for wider strided kernels over an even number of vectors NARROW_WIDE_KERNEL_BLOCK; else
    block_shape's, but NARROW_WIDE_KERNEL_BLOCK for its 2 × 6 under wider kernels."""
    order = WIDE_BLOCK_SHAPES
    if transposed_store and geometry["CG"] * geometry["KHW"] < TRANSPOSED_WIDE_CKK:
        order = order[::-1]
    shapes = []
    if registers >= 32:
        shapes = [(kv, pb) for kv, pb in order if k_blocks % kv == 0]
    elif geometry["KW"] == 1:
        shapes = list(ONE_COLUMN_BLOCKS) if k_blocks > 1 else [ONE_VECTOR_BLOCK]
    elif geometry["SW"] > 1 and k_blocks % 2 == 0:
        shapes = [NARROW_WIDE_KERNEL_BLOCK]
    if not shapes:
        shapes = [narrow_wide_kernel(block_shape(k_blocks, registers), geometry["KW"])]

    runs = {shape: pixel_rows(geometry, *shape) if pointwise else geometry for shape in shapes}

    def fma_time(shape: tuple[int, int]) -> int:
        kv, pb = shape
        return -(-k_blocks // kv) * runs[shape]["OH"] * block_cost(runs[shape]["OW"], kv, pb)
    best = min(shapes, key=fma_time)
    return best, runs[best]


# Cache blocking of the input channels, for layers whose register block's weights outgrow L2: a chunk's
# weights take at most CHUNK_L2_SHARE of L2, and an item's partial sums at most PART_BYTES (stack).
CHUNK_L2_SHARE = 0.25
PART_BYTES = 32 * 1024
# With 16 vector registers (AVX2) a block holds 3 or 4 pixels, so its weights are read again every 3-4 pixels:
# past L1_CHUNK_FACTOR × L1 they come from L2 each time, and small chunks (their weights at most CHUNK_L1_SHARE
# of L1, or one step of channels up to CHUNK_L1_MAX_SHARE for a 3×3 kernel's larger step) serve the item's rows
# from L1 next to its partial sums (at most PART_L1_SHARE of L1). Not with 32 registers (AVX-512's 12-pixel
# blocks: ResNet-50 1.03, its 1×1 convs at 7×7 1.10), nor for an item of one row (a 7×7 1×1 conv cut into one
# row of 49: 1.10). Measured on an AVX2-only Zen 3 (L1d 32 KiB, L2 512 KiB), 1 thread, against onnxruntime per
# layer in alternating rounds: the rule's first form (weights past 2 × L1, chunks of half of L1, 32 KB of
# partial sums) left the 256-channel 1×1 convs at 56×56 unchunked and had a 16 KB chunk and 28 KB of sums
# share L1: ResNeXt-50's direct layers (all 1×1) took 1.44 × onnxruntime's time, 1.34 with this rule (the
# model 245 -> 200 ms; 1.62 / 1.36 -> 1.35 / 1.22 in two earlier paired rounds); ResNet-50's 1.51 / 1.39 ->
# 1.43 / 1.36; DenseNet-121's 1.51 -> 1.56 (24 of its 117 ms). Chunks of 2 KB were slower again. On the
# AVX-512 host's Zen 4 the first form had measured ResNet-50's 512 -> 512 3×3 at 7×7 0.90 and 1024 -> 256
# 1×1 at 14×14 0.93-0.95 against no chunking; this rule was not measured there.
L1_CHUNK_FACTOR = 0.5
CHUNK_L1_SHARE = 0.125
CHUNK_L1_MAX_SHARE = 0.5
PART_L1_SHARE = 0.5


def channel_chunks(c: int, khw: int, kv: int, lanes: int, x_lanes: int, oh: int, ow: int, target) -> tuple[int, int]:
    """(input channels per chunk, output rows per item). A register block reads all its weights, c·khw·kv
    vectors, for every block of pixels. When they outgrow L2 they stream from L3 at every block of every
    row. Cut into chunks of channels whose weights stay in L2, each chunk serves all the blocks of the item's
    rows, the partial sums kept between chunks. The chunk is the largest divisor of c, a multiple of the
    input's blocks, that fits; (c, 1): no chunking, when the weights fit L2, no divisor does or one output
    row's partial sums would pass PART_BYTES. With 16 registers the same holds one level down, for weights
    past L1_CHUNK_FACTOR × L1 and items of two rows or more, with smaller chunks and sums (see CHUNK_L1_SHARE).
    fcn_resnet50's 3×3 head over 2,048 channels (2.4 MB of weights per register block), 1 thread: AVX2 build
    228 -> 164 ms from a channel-blocked input, 203 -> 167 from C×H×W (AVX2's 3-pixel blocks re-read the
    weights 10 times a row); AVX-512 138 -> 132 and 132 -> 131 ms."""
    vector_bytes = khw * kv * lanes * 4  # per input channel
    row_bytes = kv * ow * lanes * 4  # one output row's partial sums
    step = max(8, x_lanes)
    rows = min(oh, PART_BYTES // row_bytes)
    l1_rows = min(oh, int(PART_L1_SHARE * target.l1d_bytes) // row_bytes)
    if c * vector_bytes > target.l2_bytes:
        budget = target.l2_bytes * CHUNK_L2_SHARE
    elif target.vector_registers < 32 and c * vector_bytes > L1_CHUNK_FACTOR * target.l1d_bytes and l1_rows >= 2:
        budget = max(target.l1d_bytes * CHUNK_L1_SHARE, min(step * vector_bytes, target.l1d_bytes * CHUNK_L1_MAX_SHARE))
        rows = l1_rows
    else:
        return c, 1
    fits = [d for d in range(step, c, step) if c % d == 0 and d * vector_bytes <= budget]
    if not fits or rows < 1:
        return c, 1
    return max(fits), rows


def direct_lanes(filters: int, target) -> int:
    """Few filters: half-width vectors waste fewer lanes."""
    return min(8, target.lanes) if filters <= 8 else target.lanes


@register_kernel
class Direct(Kernel):
    name = "direct"
    ops = CONV_OPS
    template = "ops/conv2d_direct.c.j2"
    priority = 20
    doc = "groups = 1: vectors of output channels, register-blocked over pixels"

    def unsuitable(self, layer, in_shapes, out_shape, target):
        if layer.attrs.groups != 1:
            return f"it computes groups = 1 only; this layer has groups = {layer.attrs.groups}"
        return None

    def blocked_io(self, layer, in_shapes, out_shape, target):
        if any(tuple(s) != tuple(out_shape) for s in in_shapes[1:]):
            return None  # a residual of another shape (same size) would not index like the output
        return ("any",) + ("same",) * (len(in_shapes) - 1)

    def params(self, layer, in_shapes, out_shape, target, layouts):
        geometry = conv_fields(layer, in_shapes, out_shape)
        x_lanes, y_lanes = layouts[0], layouts[-1]
        k, c, (kh, kw) = layer.attrs.filters, in_shapes[0][0], layer.attrs.kernel
        lanes = direct_lanes(k, target)
        if y_lanes and (y_lanes != lanes or k % lanes):
            raise ValueError(f"{layer.where}: a channel-blocked output needs {lanes}-lane blocks and K a multiple "
                             f"of them, got {y_lanes} lanes for K = {k}")
        k_blocks = -(-k // lanes)
        # stride 1, unpadded 1×1: the pixels may be cut into rows of a better length
        pointwise = (kh, kw) == (1, 1) and (geometry["OH"], geometry["OW"]) == (geometry["H"], geometry["W"])
        lastn = k - (k_blocks - 1) * lanes
        # C×H×W output: stored through transposes, except a single part-filled vector (a scalar store each).
        # With a part-filled last vector among several, scalar stores made shufflenet_v2's 116 -> 116 1×1 convs
        # at 14×14 2.7× slower on the AVX2 build (160 -> 60 us).
        transposed = not y_lanes and (lastn == lanes or k_blocks > 1)
        (kv, pb), geometry = direct_block_shape(k_blocks, target.vector_registers, geometry, pointwise, transposed)
        groups = -(-k_blocks // kv)
        real_in_last = k_blocks - (groups - 1) * kv
        oh, ow, h, w = geometry["OH"], geometry["OW"], geometry["H"], geometry["W"]
        # Loop order: which would be re-read from beyond L2 more, the input (once per channel group)
        # or the weights (once per output row)?
        input_bytes, weight_bytes = 4 * c * h * w, 4 * k_blocks * lanes * c * kh * kw
        reread_input = input_bytes * groups if input_bytes > cache_bytes(target) else 0
        reread_weights = weight_bytes * oh if weight_bytes > cache_bytes(target) else 0
        pixel_stride = x_lanes or 1
        ckk = c * kh * kw
        segments = pixel_blocks(geometry, kv, pb, pixel_stride, ckk, store_lanes=lanes if transposed else 0)
        chunk, rows = channel_chunks(c, kh * kw, kv, lanes, x_lanes, oh, ow, target)
        row_items = -(-oh // rows)
        return DirectParams(
            **geometry, VL=lanes, VECTOR_BYTES=4 * lanes, KB=k_blocks, KBG=k_blocks, LAST_KB=k_blocks - 1, KV=kv, PB=pb, GROUPS=groups,
            KB_PACKED=groups * kv, PADDED=groups * kv > k_blocks, padding_vectors=tuple(v >= real_in_last for v in range(kv)),
            PIN_WEIGHTS=pin_condition(target, kv * pb + kv + 1),
            LASTN=lastn, PARTIAL_LAST=lastn != lanes, CKK=ckk,
            filter_vectors=tuple(Offset(v, v * ckk) for v in range(kv)),
            XB=x_lanes, X_NESTED=bool(x_lanes) and c % x_lanes == 0, CG_XBLOCKS=c // x_lanes if x_lanes else 0,
            X_BLOCK_FLOATS=h * w * x_lanes,
            CHANNEL_UNROLL=channel_unroll(kh * kw, x_lanes, kv * pb + kv + 1, chunk < c, target),
            TAP_STEP=geometry["DW"] * pixel_stride,
            YB=y_lanes, Y_BLOCK_FLOATS=oh * ow * lanes, segments=segments,
            **store_fields(transposed, y_lanes, geometry["activation"], kv, lanes, oh * ow, lastn),
            ROWS_INSIDE=all(lo == 0 and hi == kh for lo, hi in zip(geometry["row_lo"], geometry["row_hi"])),
            rows_outer=chunk == c and reread_weights < reread_input, CHUNKED=chunk < c, CHUNK=chunk,
            CHUNK_BYTES=chunk * kh * kw * kv * lanes * 4, ROWS=rows, ROW_ITEMS=row_items, PART_VECTORS=kv * rows * ow,
            part_vectors=tuple(Offset(v, v * rows * ow) for v in range(kv)), ITEMS=groups * row_items,
            parallel=layer.spec.macs(layer, in_shapes, out_shape) >= PARALLEL_MACS)

    def arrays(self, layer, weights, params):
        # zero filter vectors complete the last register block
        packed, bias, _ = pack_filter_blocks(conv_weights(weights), params.VL, params.KB_PACKED)
        return {"weight": packed, "bias": bias}

    def uses_thread_pool(self, params):
        return True
