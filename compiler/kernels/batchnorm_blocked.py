"""batchnorm_blocked: a batchnorm the conv before it could not absorb (DenseNet's BN-ReLU on a concat), with its
fused residual and activation, on channel-blocked tensors ([C/L][H][W][L], compiler/kernels/layouts.py;
templates/ops/batchnorm_blocked.c.j2): one vector of L channels' scale and shift per channel block. It reads
and writes either layout (the same for input, residual and output) and hands a C×H×W layer back to the op's
plain loops, so a BN-ReLU no longer sends the concat before it and the conv after it to C×H×W.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import Kernel, register_kernel
from .common import PARALLEL_READS
from .plain import HandsCHWToPlain


@dataclass(frozen=True)
class BlockedBatchNormParams:
    C: int
    HW: int
    VL: int  # lanes per channel block
    VECTOR_BYTES: int
    CB: int  # channel blocks, the thread pool's items
    X_BLOCK_FLOATS: int  # H·W·VL
    residual: bool
    activation: tuple
    parallel: bool


@register_kernel
class BlockedBatchNorm(HandsCHWToPlain, Kernel):
    name = "batchnorm_blocked"
    ops = ("batchnorm", "fused_batchnorm")
    template = "ops/batchnorm_blocked.c.j2"
    priority = 10
    doc = "scale and shift per vector of channels, on channel-blocked tensors"

    def unsuitable(self, layer, in_shapes, out_shape, target):
        if len(out_shape) != 3:
            return "it computes batchnorms of C×H×W tensors only"
        return None

    def blocked_io(self, layer, in_shapes, out_shape, target):
        return ("same",) * len(in_shapes) if out_shape[0] % target.lanes == 0 else None

    def params(self, layer, in_shapes, out_shape, target, layouts):
        lanes = layouts[-1]
        if not lanes or any(lay != lanes for lay in layouts):
            raise ValueError(f"{layer.where}: the batchnorm_blocked kernel reads and writes channel-blocked tensors "
                             f"only, got layouts {layouts}")
        args = layer.spec.kernel_args(layer, in_shapes, out_shape)
        c, hw = out_shape[0], out_shape[1] * out_shape[2]
        return BlockedBatchNormParams(C=c, HW=hw, VL=lanes, VECTOR_BYTES=4 * lanes, CB=c // lanes,
                                      X_BLOCK_FLOATS=hw * lanes, residual=bool(args.get("residual")),
                                      activation=tuple(args.get("activation", ())),
                                      parallel=c * hw * len(in_shapes) >= PARALLEL_READS)

    def uses_thread_pool(self, params):
        return True
