"""Dense layers at opt level 2.

dense_blocked (templates/ops/dense_blocked.c.j2): vectors along the units. Weights packed per block of
KV·VL units, [IN][KV·VL]; each input x[i] is broadcast once and multiplies KV weight vectors into KV
accumulators, so every weight is read once per sample with no horizontal sums. Threaded over the blocks
when large.
dense_rows (templates/ops/dense_rows.c.j2): dense_blocked over the rows of a group of samples (the batched
tail, compiler/batching.py), reading the same packed weights once per group instead of once per sample.
dense_vector (templates/ops/dense.c.j2): one unit at a time, a dot product vectorized over the inputs; it
keeps the layers with fewer units than a vector has lanes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import Kernel, register_kernel
from .common import PARALLEL_MACS, Offset


@dataclass(frozen=True)
class DenseParams:
    IN: int  # input features
    OUT: int  # units
    has_bias: bool
    residual: bool
    activation: tuple  # compiler.ops.fused.ActivationStep
    simd: bool  # the inner loop is `omp simd` (a reduction)
    parallel: bool  # units split across threads


@register_kernel
class DenseVector(Kernel):
    name = "dense_vector"
    ops = ("dense", "fused_dense")
    template = "ops/dense.c.j2"
    priority = 10
    doc = "the dense loop vectorized over the inputs"

    def params(self, layer, in_shapes, out_shape, target, layouts):
        args = layer.spec.kernel_args(layer, in_shapes, out_shape)
        return DenseParams(args["IN"], args["OUT"], args["has_bias"], args["residual"], args["activation"], simd=True,
                           parallel=layer.spec.macs(layer, in_shapes, out_shape) >= PARALLEL_MACS)

    def uses_thread_pool(self, params):
        return params.parallel


# Unit vectors per block: 8 independent FMA chains keep both FMA ports busy through the 4-cycle latency.
DENSE_BLOCK_VECTORS = 8
# At batch 1 a dense layer streams its weights once, memory-bound. With AVX-512 (a block's row of weights: 8
# vectors, 512 B) a software prefetch DENSE_PREFETCH_BYTES ahead, one per cache line, helps the hardware's:
# AlexNet's 9216 -> 4096, 4096 -> 4096 and 4096 -> 1000 layers, 1 thread, 4.95 -> 4.49, 2.37 -> 2.01 and
# 0.60 -> 0.51 ms (VGG-11's 25088 -> 4096 13.6 -> 12.9 ms); 2 KB ahead or 8 KB gained less. Not with AVX2
# (256-B rows): 4% slower at 2 and at 4 KB.
DENSE_PREFETCH_BYTES = 4096
CACHE_LINE_FLOATS = 16


# The batched form: register tiles of samples × unit vectors (ROW_TILE_SHAPES, by vector registers), over
# chunks of the inputs whose packed weights (about DENSE_CHUNK_BYTES) stay in L1 while every tile of the group
# reads them; partial sums wait on the stack between chunks. Measured on AlexNet's classifier at batch 8, one
# thread, Zen 4: AVX-512 4 × 4 16.4–18 ms (4 × 6 the same, 3 × 8 17.6–19, 6 × 4 23, 2 × 8 20); AVX2 3 × 4
# 18.5 ms (4 × 2 21.7, 4 × 3 21–24, 6 × 2 21, 2 × 6 21, 8 × 1 34); 16 KB and 64 KB chunks were slower than 32 KB.
ROW_TILE_SHAPES = {32: (4, 4), 16: (3, 4)}  # vector registers -> (samples, unit vectors) per tile
DENSE_CHUNK_BYTES = 32768


@dataclass(frozen=True)
class RowTile:
    """A register tile's unit vectors (index, offset in floats), and the offsets it prefetches per row: the lines
    its vectors read, one chunk ahead."""
    vectors: tuple[Offset, ...]
    prefetch: tuple[int, ...]


def row_tiles(vectors: tuple[Offset, ...], per_tile: int, ahead: int) -> tuple[RowTile, ...]:
    """A block's unit vectors in tiles of `per_tile`; `ahead`: floats from a row to its next chunk's."""
    tiles = [vectors[lo:lo + per_tile] for lo in range(0, len(vectors), per_tile)]
    return tuple(RowTile(tile, tuple(ahead + vec.offset for vec in tile if vec.offset % CACHE_LINE_FLOATS == 0))
                 for tile in tiles)


def prefetch_offsets(stride: int, lanes: int) -> tuple[int, ...]:
    """Per row of `stride` floats of packed weights: the offsets of the lines to prefetch (none for AVX2)."""
    if lanes < 16:
        return ()
    ahead = DENSE_PREFETCH_BYTES // 4
    return tuple(ahead + line for line in range(0, stride, CACHE_LINE_FLOATS))


@dataclass(frozen=True)
class DenseBlockedParams:
    IN: int  # input features
    OUT: int  # units
    residual: bool
    activation: tuple  # compiler.ops.fused.ActivationStep
    VL: int  # units per vector
    VECTOR_BYTES: int
    KV: int  # vectors per whole block
    FULL_BLOCKS: int  # blocks of KV full vectors
    block_vectors: tuple[Offset, ...]  # per vector of a whole block: v·VL
    tail_vectors: tuple[Offset, ...]  # the last block's, when it has fewer vectors or a part-filled one
    PARTIAL: int  # units in the tail's last vector, 0: full
    BLOCK_UNITS: int  # KV·VL
    BLOCK_FLOATS: int  # KV·VL·IN: one whole block's packed weights
    TAIL_WEIGHTS: int  # where the last block's weights start: FULL_BLOCKS·BLOCK_FLOATS
    TAIL_STRIDE: int  # floats per input of the tail's packed weights
    BLOCKS: int  # the tail counted
    PADDED_UNITS: int  # OUT zero-padded to whole vectors
    parallel: bool
    prefetch: tuple[int, ...]  # per row of a whole block: lines to prefetch, floats ahead of the row
    tail_prefetch: tuple[int, ...]  # the same for the last block's rows
    # The batched form (dense_rows.c.j2):
    ROW_TILE: int  # samples per register tile
    row_remainders: tuple[int, ...]  # the smaller tiles a group's last samples take: ROW_TILE-1 .. 1
    block_tiles: tuple[RowTile, ...]  # a whole block's unit vectors, per register tile
    tail_tiles: tuple[RowTile, ...]  # the last block's
    IN_CHUNK: int  # inputs per chunk: IN_CHUNK·BLOCK_UNITS weights, about DENSE_CHUNK_BYTES


@register_kernel
class DenseBlocked(Kernel):
    name = "dense_blocked"
    ops = ("dense", "fused_dense")
    template = "ops/dense_blocked.c.j2"
    priority = 20
    doc = "the dense layer with vectors along the units, weights packed per block of units"

    def wanted(self, layer, in_shapes, out_shape, target):
        if layer.attrs.units < target.lanes:
            return None  # a part-empty vector: one dot product per unit does less
        return f"{layer.attrs.units} ≥ {target.lanes} units: vectors along the units"

    def params(self, layer, in_shapes, out_shape, target, layouts):
        args = layer.spec.kernel_args(layer, in_shapes, out_shape)
        lanes, n_in, units = target.lanes, args["IN"], args["OUT"]
        vectors = -(-units // lanes)
        kv = min(DENSE_BLOCK_VECTORS, vectors)
        tile_rows, per_tile = ROW_TILE_SHAPES[32 if target.vector_registers >= 32 else 16]
        chunk = max(1, min(n_in, DENSE_CHUNK_BYTES // (4 * kv * lanes)))
        partial = units % lanes
        full_blocks = vectors // kv if not partial else (vectors - 1) // kv
        tail = vectors - full_blocks * kv
        block_vectors = tuple(Offset(v, v * lanes) for v in range(kv))
        return DenseBlockedParams(
            IN=n_in, OUT=units, residual=args["residual"], activation=args["activation"], VL=lanes,
            VECTOR_BYTES=4 * lanes, KV=kv, FULL_BLOCKS=full_blocks, block_vectors=block_vectors,
            tail_vectors=block_vectors[:tail], PARTIAL=partial,
            BLOCK_UNITS=kv * lanes, BLOCK_FLOATS=kv * lanes * n_in, TAIL_WEIGHTS=full_blocks * kv * lanes * n_in,
            TAIL_STRIDE=tail * lanes, BLOCKS=full_blocks + (tail > 0),
            PADDED_UNITS=vectors * lanes, parallel=layer.spec.macs(layer, in_shapes, out_shape) >= PARALLEL_MACS,
            prefetch=prefetch_offsets(kv * lanes, lanes), tail_prefetch=prefetch_offsets(tail * lanes, lanes),
            ROW_TILE=tile_rows, row_remainders=tuple(range(tile_rows - 1, 0, -1)),
            block_tiles=row_tiles(block_vectors, per_tile, chunk * kv * lanes),
            tail_tiles=row_tiles(block_vectors[:tail], per_tile, chunk * tail * lanes), IN_CHUNK=chunk)

    def arrays(self, layer, weights, params):
        """weight: per block, [IN][vectors·VL] (the last block's units zero-padded); bias [PADDED_UNITS]."""
        lowered = layer.spec.lower_weights(layer, weights)
        rows = lowered["weight"].reshape(params.OUT, params.IN)
        packed = np.zeros(params.PADDED_UNITS * params.IN, np.float32)  # written in place: VGG's is 411 MB
        for b in range(params.BLOCKS):
            lo = b * params.BLOCK_UNITS
            width = min(params.BLOCK_UNITS, params.PADDED_UNITS - lo)
            block = packed[lo * params.IN:(lo + width) * params.IN].reshape(params.IN, width)
            units = rows[lo:lo + width]
            block[:, :len(units)] = units.T
        bias = np.zeros(params.PADDED_UNITS, np.float32)
        if "bias" in lowered:
            bias[:params.OUT] = lowered["bias"]
        return {"weight": packed, "bias": bias}

    def uses_thread_pool(self, params):
        return params.parallel

    def rows_template_for(self, layer, params):
        return None if params.residual else "ops/dense_rows.c.j2"
