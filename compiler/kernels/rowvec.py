"""rowvec: convolutions with few input channels (groups = 1, C ≤ 8: first layers), vectors along the output
row (templates/ops/conv2d_rowvec.c.j2).

Per output row, the C·KH input rows it reads are copied once into zero-padded buffers split by column phase
(the stride), so each tap of a vector of outputs is one load; MR filters × NR vectors of accumulators,
weights packed [K/MR][C][KH][KW][MR] and broadcast. Stores are whole vectors along the row.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import Kernel, register_kernel
from .common import (PARALLEL_MACS, STACK_BUFFER_BYTES, ConvParams, Offset, Phase, conv_fields, conv_weights,
                     pack_filter_blocks, phases, pin_condition)
from .direct import CONV_OPS

ROWVEC_MAX_CHANNELS = 8  # up to this many input channels, vectors along the output row beat the direct kernel
# ... except on short rows with many taps per output, where the row copies cost more than they save: rows
# under SHORT_ROW outputs with at least MANY_TAPS = C·KH·KW take the direct kernel (AlexNet's 11×11/4 stem,
# 55 outputs a row, 363 taps: AVX-512 1.54 -> 1.45 ms, AVX2 build 1.63 -> 1.41; LeNet-5's second conv, 10
# outputs, 150 taps: 0.060 -> 0.035 / 0.074 -> 0.061 ms at batch 8). Long rows (ResNet's 7×7/2 stem, 112)
# and small windows (3×3 stems, 27 taps) stay here: the direct kernel was 1.2-2.5× slower there.
SHORT_ROW = 64
MANY_TAPS = 100


def row_length(args: dict, lanes: int) -> int:
    """Floats per phase of one row copy."""
    return -(-args["OW"] // lanes) * lanes + (args["KW"] - 1) * args["DW"] // args["SW"] + 1


def copy_bytes(args: dict, lanes: int) -> int:
    """The row copies on the stack: C·KH rows of SW phases."""
    return 4 * args["C"] * args["KH"] * args["SW"] * row_length(args, lanes)


@dataclass(frozen=True)
class RowTap:
    """Kernel column kw in a block: the row-copy phase it reads, per output vector r the column it loads
    (r·VL + (kw·DW) / SW from the block's start), and per filter m of the register block its weight."""
    phase: int
    loads: tuple[Offset, ...]
    weights: tuple[Offset, ...]  # per filter m: kw·MR + m


@dataclass(frozen=True)
class VectorRun:
    """`count` equal blocks of nr output vectors from column `start` (a C loop when repeated, stepping `step`
    columns; last = its last column, end one past); partial > 0: the last vector holds that many columns."""
    start: int
    nr: int
    count: int
    repeated: bool
    step: int
    last: int
    end: int
    partial: int
    vectors: tuple[Offset, ...]  # per vector r: r·VL
    taps: tuple[RowTap, ...]


@dataclass(frozen=True)
class RowVectorParams(ConvParams):
    VL: int
    VECTOR_BYTES: int
    MR: int  # filters per register block
    KB: int
    LAST_KB: int
    LASTN: int
    PARTIAL_LAST: bool
    BIAS_FLOATS: int
    TAP_FLOATS: int  # weights per kernel row of a block: KW·MR
    RL: int  # floats per phase of a row copy
    phases: tuple[Phase, ...]
    segments: tuple[VectorRun, ...]
    parallel: bool
    PIN_INPUT: str  # the C condition under which a tap's NR row vectors are held in registers ("": never)


# With 16 registers (AVX2): register blocks whose row vectors stay in registers beside the accumulators
# (common.pin_condition), with their speed relative to 6 × 2's; the last block's filters past K are computed and
# not stored. ResNet-18's 7×7/2 stem (64 filters at 112×112), AVX2-only Zen 3, 1 thread, alternating rounds:
# 4 × 2 with the row vectors read as FMA memory operands 7.15 ms, pinned 3.31, 6 × 2 pinned 2.91 (onnxruntime
# about 4.1).
NARROW_BLOCKS = ((6, 2, 1.0), (4, 2, 0.88))


def register_block(k: int, target) -> tuple[int, int]:
    """(MR filters, NR vectors) for k filters: 8 × 2 with 32 registers (16 accumulators); with 16 the block of
    NARROW_BLOCKS with the least FMA time per filter, the padding of the last block counted."""
    if target.vector_registers >= 32:
        return 8, 2
    mr, nr, _ = min(NARROW_BLOCKS, key=lambda b: -(-k // b[0]) * b[0] / b[2])
    return mr, nr


@register_kernel
class RowVector(Kernel):
    name = "rowvec"
    ops = CONV_OPS
    template = "ops/conv2d_rowvec.c.j2"
    priority = 40

    def unsuitable(self, layer, in_shapes, out_shape, target):
        if layer.attrs.groups != 1:
            return f"it computes groups = 1 only; this layer has groups = {layer.attrs.groups}"
        args = layer.spec.kernel_args(layer, in_shapes, out_shape)
        if copy_bytes(args, target.lanes) > STACK_BUFFER_BYTES:
            return (f"its row copies ({copy_bytes(args, target.lanes)} bytes) would not fit the stack budget "
                    f"({STACK_BUFFER_BYTES})")
        return None

    def wanted(self, layer, in_shapes, out_shape, target):
        c = in_shapes[0][0]
        if c > ROWVEC_MAX_CHANNELS:
            return None
        (kh, kw), ow = layer.attrs.kernel, out_shape[2]
        if ow < SHORT_ROW and c * kh * kw >= MANY_TAPS:
            return None
        return f"{c} ≤ {ROWVEC_MAX_CHANNELS} input channels: vectors along the output row"

    def params(self, layer, in_shapes, out_shape, target, layouts):
        geometry = conv_fields(layer, in_shapes, out_shape)
        lanes = target.lanes
        k = layer.attrs.filters
        mr, nr = register_block(k, target)
        k_blocks = -(-k // mr)
        ow, kw, dw, sw = geometry["OW"], geometry["KW"], geometry["DW"], geometry["SW"]
        vectors = -(-ow // lanes)
        runs: list[dict] = []  # runs of equal full segments become one C loop (count > 1)
        for first in range(0, vectors, nr):
            n = min(nr, vectors - first)
            last_pixels = ow - (first + n - 1) * lanes
            run = {"start": first * lanes, "nr": n, "partial": last_pixels if last_pixels < lanes else 0, "count": 1}
            last = runs[-1] if runs else None
            if last and not last["partial"] and not run["partial"] and last["nr"] == n:
                last["count"] += 1
            else:
                runs.append(run)
        segments = tuple(
            VectorRun(r["start"], r["nr"], r["count"], r["count"] > 1, r["nr"] * lanes,
                      r["start"] + r["count"] * r["nr"] * lanes - 1, r["start"] + r["count"] * r["nr"] * lanes,
                      r["partial"], tuple(Offset(v, v * lanes) for v in range(r["nr"])),
                      tuple(RowTap(t * dw % sw, tuple(Offset(v, v * lanes + t * dw // sw) for v in range(r["nr"])),
                                   tuple(Offset(m, t * mr + m) for m in range(mr))) for t in range(kw)))
            for r in runs)
        row_len = row_length(geometry, lanes)
        lastn = k - (k_blocks - 1) * mr
        return RowVectorParams(
            **geometry, VL=lanes, VECTOR_BYTES=4 * lanes, MR=mr, KB=k_blocks, LAST_KB=k_blocks - 1, LASTN=lastn,
            PARTIAL_LAST=lastn != mr, BIAS_FLOATS=k_blocks * mr, TAP_FLOATS=kw * mr, RL=row_len,
            phases=phases(row_len, sw, geometry["PL"], geometry["W"]), segments=segments,
            parallel=layer.spec.macs(layer, in_shapes, out_shape) >= PARALLEL_MACS,
            PIN_INPUT=pin_condition(target, mr * nr + nr + 1))

    def arrays(self, layer, weights, params):
        packed, bias, _ = pack_filter_blocks(conv_weights(weights), params.MR)
        return {"weight": packed, "bias": bias}

    def uses_thread_pool(self, params):
        return True
