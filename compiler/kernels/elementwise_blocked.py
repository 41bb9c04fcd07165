"""elementwise_blocked: add, sub, mul and div on channel-blocked tensors ([C/L][H][W][L], compiler/kernels/layouts.py;
templates/ops/elementwise_blocked.c.j2), each operand either the output's shape (read in its layout) or one value
per channel (C×1×1, the same memory in both layouts: a vector of L channels per block). Squeeze-excitation's
scale multiply (EfficientNet, MobileNetV3, RegNet-Y) is such a layer: with the C×H×W loops only, it sent the
depthwise conv before it and the 1×1 conv after it to C×H×W. It hands C×H×W layers back to the op's loops.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import Kernel, register_kernel
from .common import PARALLEL_READS
from .plain import HandsCHWToPlain

# The ops whose vector form is the scalar form lane by lane (max and min are fmaxf / fminf there: their NaN rule
# differs from a vector comparison).
OPERATORS = {"add": "+", "sub": "-", "mul": "*", "div": "/"}


@dataclass(frozen=True)
class Operand:
    name: str  # the input's C variable (x0, x1, ...)
    per_channel: bool  # C×1×1: one value per channel, a vector per channel block
    scalar_index: str  # the portable path's index of lane l of pixel `at` (in block cb)


@dataclass(frozen=True)
class BlockedElementwiseParams:
    C: int
    HW: int
    VL: int
    VECTOR_BYTES: int
    CB: int  # channel blocks, the thread pool's items
    X_BLOCK_FLOATS: int  # H·W·VL
    operands: tuple[Operand, ...]
    OPERATOR: str  # the C operator folding the operands from the left
    parallel: bool


def operand_modes(in_shapes, out_shape) -> tuple[str, ...] | None:
    """Per input: "same" (the output's shape) or "if_out" (C×1×1: either layout, the same memory, where the output
    is blocked; where it is not, the op's loops read it and take C×H×W only); None if an input broadcasts
    otherwise."""
    modes = []
    for s in in_shapes:
        if tuple(s) == tuple(out_shape):
            modes.append("same")
        elif tuple(s) == (out_shape[0], 1, 1):
            modes.append("if_out")
        else:
            return None
    return tuple(modes) if "same" in modes else None


@register_kernel
class BlockedElementwise(HandsCHWToPlain, Kernel):
    name = "elementwise_blocked"
    ops = tuple(OPERATORS)
    template = "ops/elementwise_blocked.c.j2"
    priority = 10
    doc = "whole vectors of channels, on channel-blocked tensors (operands of the output's shape or per channel)"

    def unsuitable(self, layer, in_shapes, out_shape, target):
        if len(out_shape) != 3 or operand_modes(in_shapes, out_shape) is None:
            return "it computes C×H×W operands of the output's shape or of one value per channel (C×1×1) only"
        return None

    def blocked_io(self, layer, in_shapes, out_shape, target):
        return operand_modes(in_shapes, out_shape) if out_shape[0] % target.lanes == 0 else None

    def params(self, layer, in_shapes, out_shape, target, layouts):
        lanes = layouts[-1]
        full = [tuple(s) == tuple(out_shape) for s in in_shapes]
        if not lanes or any(f and lay != lanes for f, lay in zip(full, layouts)):
            raise ValueError(f"{layer.where}: the elementwise_blocked kernel reads and writes channel-blocked "
                             f"tensors only, got layouts {layouts}")
        c, hw = out_shape[0], out_shape[1] * out_shape[2]
        return BlockedElementwiseParams(
            C=c, HW=hw, VL=lanes, VECTOR_BYTES=4 * lanes, CB=c // lanes, X_BLOCK_FLOATS=hw * lanes,
            operands=tuple(Operand(f"x{i}", not f, "at" if f else f"cb * {lanes} + l") for i, f in enumerate(full)),
            OPERATOR=OPERATORS[layer.op],
            parallel=c * hw * len(in_shapes) >= PARALLEL_READS)

    def arrays(self, layer, weights, params):
        return {}

    def uses_thread_pool(self, params):
        return True
