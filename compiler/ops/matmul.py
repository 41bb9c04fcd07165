"""matmul: torch.matmul of each sample's two operands, any rank; a `constant` operand is the same matrix for every
sample (ONNX MatMul with a constant operand).

On per-sample shapes: a 1-D operand is a row (left) or a column (right) vector whose axis leaves the result; the
last two axes of the others are matrices; the axes before them broadcast as NumPy does (aligned at the right, a
size-1 axis repeats). The ONNX front end lowers N×K times a constant K×M to `dense` (its vectorized kernel).
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from . import register
from .base import Op, Shape, fmt_shape
from .merge import align_ranks, broadcast_shape
from .strided import broadcast_strides, loop_nest


def _matrices(shape: Shape, left: bool) -> Shape:
    """The operand as matrices: a vector becomes 1×K (left) or K×1 (right)."""
    if len(shape) == 1:
        return (1, shape[0]) if left else (shape[0], 1)
    return tuple(shape)


@register
class MatMul(Op):
    name = "matmul"
    onnx_types = ("MatMul",)
    arity = 2
    template = "ops/matmul.c.j2"
    doc = ("the matrix product of each sample's two inputs, as torch.matmul (1-D operands, broadcasting batch axes); "
           "a `constant` input is the same for every sample")

    def dims(self, layer, in_shapes) -> tuple[Shape, int, int, int]:
        """(the broadcast batch axes, M, K, P) of (..., M, K) @ (..., K, P)."""
        a, b = _matrices(in_shapes[0], True), _matrices(in_shapes[1], False)
        if a[-1] != b[-2]:
            raise ShapeError(f"{layer.where}: cannot multiply input '{layer.inputs[0]}' ({fmt_shape(in_shapes[0])}) "
                             f"by input '{layer.inputs[1]}' ({fmt_shape(in_shapes[1])}): the first has {a[-1]} "
                             f"columns, the second {b[-2]} rows")
        if len(a) == len(b) == 2:
            return (), a[-2], a[-1], b[-1]
        try:
            batch = broadcast_shape(layer, [a[:-2] or (1,), b[:-2] or (1,)])
        except ShapeError:
            raise ShapeError(f"{layer.where}: the batch axes of input '{layer.inputs[0]}' ({fmt_shape(in_shapes[0])}) "
                             f"and input '{layer.inputs[1]}' ({fmt_shape(in_shapes[1])}) do not broadcast: "
                             f"{fmt_shape(a[:-2])} against {fmt_shape(b[:-2])} (aligned at the right, each pair of "
                             "sizes equal or one of them 1)") from None
        return batch, a[-2], a[-1], b[-1]

    def infer_shape(self, layer, in_shapes):
        batch, m, _, p = self.dims(layer, in_shapes)
        out = batch + ((m,) if len(in_shapes[0]) > 1 else ()) + ((p,) if len(in_shapes[1]) > 1 else ())
        if not out:
            raise ShapeError(f"{layer.where}: the product of two vectors ({fmt_shape(in_shapes[0])} and "
                             f"{fmt_shape(in_shapes[1])}) is one number per sample, which leaves no per-sample axis")
        return out

    def macs(self, layer, in_shapes, out_shape):
        batch, m, k, p = self.dims(layer, in_shapes)
        return int(np.prod(batch, dtype=np.int64)) * m * k * p

    def formula(self, layer, in_shapes, out_shape):
        batch, m, k, p = self.dims(layer, in_shapes)
        lead = f"{fmt_shape(batch)} × " if batch else ""
        return f"{lead}({m}×{k})·({k}×{p}) -> {fmt_shape(out_shape)}"

    def reference(self, layer, inputs, weights):
        a, b = inputs
        a = a[:, None, :] if a.ndim == 2 else a  # a vector per sample: a 1×K matrix
        b = b[:, :, None] if b.ndim == 2 else b  # ... a K×1 matrix
        y = np.matmul(*align_ranks([a, b]))
        n = y.shape[0]
        return y.reshape(n, *self.infer_shape(layer, [x.shape[1:] for x in inputs]))

    def kernel_args(self, layer, in_shapes, out_shape):
        # One call of the block product per index of the batch axes, each operand's matrix at its own offset.
        batch, m, k, p = self.dims(layer, in_shapes)
        a, b = _matrices(in_shapes[0], True), _matrices(in_shapes[1], False)
        if batch and a[:-2] == batch and not any(broadcast_strides(b[:-2], batch)):
            m, batch = m * int(np.prod(batch)), ()  # a constant right matrix: the batch of rows is one tall matrix
        strides = [[s * m * p for s in broadcast_strides(batch, batch)],
                   [s * m * k for s in broadcast_strides(a[:-2], batch)],
                   [s * k * p for s in broadcast_strides(b[:-2], batch)]]
        return {"M": m, "K": k, "P": p, **loop_nest(batch, strides).template_args()}
