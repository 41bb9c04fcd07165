"""pointwise: a 1×1, stride 1, unpadded convolution as a matrix product Y[K][P] = W[K][C]·X[C][P]
(templates/ops/conv2d_pointwise.c.j2).

Vectors run along the P = H·W pixels (contiguous in C×H×W); each step multiplies NR pixel vectors by MR
broadcast weights, MR·NR accumulators in registers (weights packed [K/MR][C][MR]).
"""
from __future__ import annotations

from types import MappingProxyType

from . import KERNELS, Kernel, register_kernel
from .common import PARALLEL_MACS, cache_bytes, conv_weights, pack_filter_blocks
from .direct import CONV_OPS

# Below this many pixels a 1×1 conv takes the direct kernel: vectors along the output channels, whose
# lanes stay full where a 14×14 or 7×7 map leaves the pixel vectors part empty
# (MobileNetV2's 7×7 and 14×14 layers: 6-15% faster).
POINTWISE_MIN_PIXELS = 256


def register_block(target) -> tuple[int, int]:
    """(MR filters, NR pixel vectors): MR·NR accumulators, 24 of 32 vector registers or 12 of 16."""
    return (8, 3) if target.vector_registers >= 32 else (4, 3)


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
        args = layer.spec.kernel_args(layer, in_shapes, out_shape)
        lanes = target.lanes
        k, c = layer.attrs.filters, in_shapes[0][0]
        mr, nr = register_block(target)
        k_blocks = -(-k // mr)
        p = args["H"] * args["W"]
        chunks = p // (nr * lanes)
        partial = p % lanes  # pixels in the last, partly filled vector
        tail_vecs = (p - chunks * nr * lanes) // lanes + (partial > 0)
        input_bytes, weight_bytes = 4 * c * p, 4 * k_blocks * mr * c
        reread_input = input_bytes * k_blocks if input_bytes > cache_bytes(target) else 0
        reread_weights = weight_bytes * chunks if weight_bytes > cache_bytes(target) else 0
        macs = layer.spec.macs(layer, in_shapes, out_shape)
        return MappingProxyType(dict(
            args, VL=lanes, MR=mr, NR=nr, KB=k_blocks, LASTN=k - (k_blocks - 1) * mr, P=p, CHUNKS=chunks,
            TAIL_VECS=tail_vecs, PARTIAL=partial, pixels_outer=reread_weights < reread_input,
            parallel=macs >= PARALLEL_MACS, NCH=chunks + (tail_vecs > 0),
            ITEMS=k_blocks * (chunks + (tail_vecs > 0))))

    def arrays(self, layer, weights, params):
        packed, bias, _ = pack_filter_blocks(conv_weights(weights), params["MR"])  # [K/MR][C][1][1][MR]
        return {"weight": packed, "bias": bias}

    def uses_thread_pool(self, params):
        return True
