"""rowvec: convolutions with few input channels (groups = 1, C ≤ 8: first layers), vectors along the output
row (templates/ops/conv2d_rowvec.c.j2).

Per output row, the C·KH input rows it reads are copied once into zero-padded buffers split by column phase
(the stride), so each tap of a vector of outputs is one load; MR filters × NR vectors of accumulators,
weights packed [K/MR][C][KH][KW][MR] and broadcast. Stores are whole vectors along the row.
"""
from __future__ import annotations

from types import MappingProxyType

from . import Kernel, register_kernel
from .common import PARALLEL_MACS, STACK_BUFFER_BYTES, conv_weights, pack_filter_blocks, phases
from .direct import CONV_OPS

ROWVEC_MAX_CHANNELS = 8  # up to this many input channels, vectors along the output row beat the direct kernel


def row_length(args: dict, lanes: int) -> int:
    """Floats per phase of one row copy."""
    return -(-args["OW"] // lanes) * lanes + (args["KW"] - 1) * args["DW"] // args["SW"] + 1


def copy_bytes(args: dict, lanes: int) -> int:
    """The row copies on the stack: C·KH rows of SW phases."""
    return 4 * args["C"] * args["KH"] * args["SW"] * row_length(args, lanes)


def register_block(target) -> tuple[int, int]:
    """(MR filters, NR vectors): MR·NR accumulators, 16 of 32 vector registers or 8 of 16."""
    return (8, 2) if target.vector_registers >= 32 else (4, 2)


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
        return f"{c} ≤ {ROWVEC_MAX_CHANNELS} input channels: vectors along the output row"

    def params(self, layer, in_shapes, out_shape, target, layouts):
        args = layer.spec.kernel_args(layer, in_shapes, out_shape)
        lanes = target.lanes
        k = layer.attrs.filters
        mr, nr = register_block(target)
        k_blocks = -(-k // mr)
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
        row_len = row_length(args, lanes)
        macs = layer.spec.macs(layer, in_shapes, out_shape)
        return MappingProxyType(dict(
            args, VL=lanes, MR=mr, KB=k_blocks, LASTN=k - (k_blocks - 1) * mr, OHW=args["OH"] * ow,
            segments=segments, RL=row_len, phases=phases(row_len, args["SW"], args["PL"], args["W"]),
            parallel=macs >= PARALLEL_MACS))

    def arrays(self, layer, weights, params):
        packed, bias, _ = pack_filter_blocks(conv_weights(weights), params["MR"])
        return {"weight": packed, "bias": bias}

    def uses_thread_pool(self, params):
        return True
