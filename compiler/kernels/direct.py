"""direct: the register-blocked direct convolution for groups = 1 (templates/ops/conv2d_direct.c.j2).

The innermost step multiplies a vector of VL output channels (weights packed [K/VL][C][KH][KW][VL]) by one
input value per output pixel, for KV vectors × PB pixels of accumulators held in registers. Each output row
is cut into blocks of pixels; interior blocks loop over every tap, border blocks list only the taps inside
the input. It reads its input in either layout and writes C×H×W or, with whole vectors of filters,
channel-blocked outputs (one vector store per pixel).
"""
from __future__ import annotations

from types import MappingProxyType

from . import Kernel, register_kernel
from .common import (PARALLEL_MACS, block_shape, cache_bytes, conv_weights, pack_filter_blocks,
                     row_segments)

CONV_OPS = ("conv2d", "fused_conv2d")


def direct_lanes(filters: int, target) -> int:
    """Few filters: half-width vectors waste fewer lanes."""
    return min(8, target.lanes) if filters <= 8 else target.lanes


@register_kernel
class Direct(Kernel):
    name = "direct"
    ops = CONV_OPS
    template = "ops/conv2d_direct.c.j2"
    priority = 20
    doc = "register-blocked direct convolution (groups = 1)"

    def unsuitable(self, layer, in_shapes, out_shape, target):
        if layer.attrs.groups != 1:
            return f"it computes groups = 1 only; this layer has groups = {layer.attrs.groups}"
        return None

    def blocked_io(self, layer, in_shapes, out_shape, target):
        if any(tuple(s) != tuple(out_shape) for s in in_shapes[1:]):
            return None  # a residual of another shape (same size) would not index like the output
        return ("any",) + ("same",) * (len(in_shapes) - 1)

    def params(self, layer, in_shapes, out_shape, target, layouts):
        args = layer.spec.kernel_args(layer, in_shapes, out_shape)
        x_lanes, y_lanes = layouts[0], layouts[-1]
        k, c, (kh, kw) = layer.attrs.filters, in_shapes[0][0], layer.attrs.kernel
        lanes = direct_lanes(k, target)
        if y_lanes and (y_lanes != lanes or k % lanes):
            raise ValueError(f"{layer.where}: a channel-blocked output needs {lanes}-lane blocks and K a multiple "
                             f"of them, got {y_lanes} lanes for K = {k}")
        k_blocks = -(-k // lanes)
        kv, pb = block_shape(k_blocks, target.vector_registers)
        # Loop order: which would be re-read from beyond L2 more, the input (once per channel group)
        # or the weights (once per output row)?
        input_bytes, weight_bytes = 4 * c * args["H"] * args["W"], 4 * k_blocks * lanes * c * kh * kw
        reread_input = input_bytes * (k_blocks // kv) if input_bytes > cache_bytes(target) else 0
        reread_weights = weight_bytes * args["OH"] if weight_bytes > cache_bytes(target) else 0
        macs = layer.spec.macs(layer, in_shapes, out_shape)
        return MappingProxyType(dict(
            args, VL=lanes, KB=k_blocks, KV=kv, PB=pb, CKK=c * kh * kw, LASTN=k - (k_blocks - 1) * lanes,
            OHW=args["OH"] * args["OW"], segments=row_segments(args["col_lo"], args["col_hi"], kw, pb),
            parallel=macs >= PARALLEL_MACS, rows_outer=reread_weights < reread_input,
            ITEMS=(k_blocks // kv) * args["OH"], XB=x_lanes, XS=x_lanes or 1, YB=y_lanes))

    def arrays(self, layer, weights, params):
        packed, bias, _ = pack_filter_blocks(conv_weights(weights), params["VL"])
        return {"weight": packed, "bias": bias}

    def uses_thread_pool(self, params):
        return True
