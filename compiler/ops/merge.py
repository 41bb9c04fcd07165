"""Ops over several inputs: element-wise arithmetic with broadcasting (add, sub, mul, div, max, min, pow)
and concat along any axis.

Broadcasting follows NumPy (and ONNX) on the per-sample shapes: shapes align at the right, the result
has the largest rank, and on every axis the sizes must be equal or one of them 1 (which repeats).
The batch axis is never broadcast: every operand has the same batch size (a `constant` is the same
tensor for every sample).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..errors import ShapeError
from . import register
from .base import Op, Shape, attr, batch_offset, fmt_shape, parse_int, resolve_axis
from .strided import broadcast_strides, contiguous_strides, loop_nest


def broadcast_shape(layer, in_shapes: list[Shape]) -> Shape:
    """The per-sample result shape, or a ShapeError naming two inputs that do not fit and the axis."""
    rank = max(len(s) for s in in_shapes)
    padded = [(1,) * (rank - len(s)) + tuple(s) for s in in_shapes]
    out = []
    for axis in range(rank):
        sizes = {p[axis] for p in padded} - {1}
        if len(sizes) > 1:
            first = next(i for i, p in enumerate(padded) if p[axis] != 1)
            other = next(i for i, p in enumerate(padded) if p[axis] not in (1, padded[first][axis]))
            a, b = layer.inputs[first], layer.inputs[other]
            raise ShapeError(
                f"{layer.where}: cannot broadcast input '{a}' ({fmt_shape(in_shapes[first])}) with input '{b}' "
                f"({fmt_shape(in_shapes[other])}): at axis {axis - rank} (counted from the right) the sizes "
                f"{padded[first][axis]} and {padded[other][axis]} differ and neither is 1")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def align_ranks(inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Batched arrays (N, *shape) with 1s inserted after N so that all have the same rank (right alignment)."""
    rank = max(x.ndim for x in inputs)
    return [x.reshape(x.shape[0], *(1,) * (rank - x.ndim), *x.shape[1:]) for x in inputs]


class _Broadcast(Op):
    """y = x0 ∘ x1 ∘ ... folded from the left, with broadcasting."""
    arity = None
    template = "ops/elementwise.c.j2"
    mults_per_operand: ClassVar[int] = 0  # MACs counted per output value and operand after the first

    def infer_shape(self, layer, in_shapes):
        return broadcast_shape(layer, in_shapes)

    def numpy(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        raise NotImplementedError


    def reference(self, layer, inputs, weights):
        return functools.reduce(self.numpy, align_ranks(inputs))

    def macs(self, layer, in_shapes, out_shape):
        return self.mults_per_operand * (len(in_shapes) - 1) * int(np.prod(out_shape))

    def formula(self, layer, in_shapes, out_shape):
        if all(tuple(s) == tuple(out_shape) for s in in_shapes):
            return ""
        return f"broadcast({', '.join(fmt_shape(s) for s in in_shapes)}) = {fmt_shape(out_shape)}"

    def kernel_args(self, layer, in_shapes, out_shape):
        """The loops over the output, each operand's index (templates/ops/elementwise.c.j2 combines them with
        the op's macro)."""
        strides = [contiguous_strides(out_shape)] + [broadcast_strides(s, out_shape) for s in in_shapes]
        return {"op": self.name, "broadcasts": len(set(map(tuple, in_shapes))) > 1,
                **loop_nest(out_shape, strides).template_args()}


@register
class Add(_Broadcast):
    name = "add"
    onnx_types = ("Add", "Sum")
    doc = ("element-wise sum x0 + x1 + ... of two or more inputs (residual connections, ONNX Sum), "
           "with NumPy broadcasting of the per-sample shapes (aligned at the right; a size-1 axis repeats)")

    def numpy(self, a, b):
        return a + b



@register
class Sub(_Broadcast):
    name = "sub"
    onnx_types = ("Sub",)
    doc = "element-wise difference x0 − x1 − ... (folded from the left), broadcasting as `add`"

    def numpy(self, a, b):
        return a - b



@register
class Mul(_Broadcast):
    name = "mul"
    onnx_types = ("Mul",)
    mults_per_operand = 1
    doc = "element-wise product x0 · x1 · ..., broadcasting as `add`"

    def numpy(self, a, b):
        return a * b



@register
class Div(_Broadcast):
    name = "div"
    onnx_types = ("Div",)
    arity = 2
    mults_per_operand = 1
    doc = "element-wise quotient x0 / x1 (float division), broadcasting as `add`"

    def numpy(self, a, b):
        with np.errstate(divide="ignore", invalid="ignore"):
            return a / b



@register
class Max(_Broadcast):
    name = "max"
    onnx_types = ("Max",)
    doc = "element-wise maximum of two or more inputs, broadcasting as `add`"

    def numpy(self, a, b):
        return np.maximum(a, b)



@register
class Min(_Broadcast):
    name = "min"
    onnx_types = ("Min",)
    doc = "element-wise minimum of two or more inputs, broadcasting as `add`"

    def numpy(self, a, b):
        return np.minimum(a, b)



@register
class Pow(_Broadcast):
    name = "pow"
    onnx_types = ("Pow",)
    arity = 2
    mults_per_operand = 1
    doc = ("element-wise power x0 ^ x1 (C powf: a negative base with a non-integer exponent gives NaN), "
           "broadcasting as `add`")

    def numpy(self, a, b):
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            return np.power(a, b)



# ---------------------------------------------------------------- concat
@dataclass(frozen=True)
class ConcatAttrs:
    axis: int = attr(parse_int, 1, doc="the axis to join along, as torch.cat's dim: 1 = channels (0 is the batch; "
                                        "negative counts from the end)")


@register
class Concat(Op):
    name = "concat"
    onnx_types = ("Concat",)
    Attrs = ConcatAttrs
    arity = None
    template = "ops/concat.c.j2"
    doc = "join two or more inputs of equal rank along `axis`; all other sizes must match"

    def axis(self, layer, in_shapes) -> int:
        return resolve_axis(layer, "axis", layer.attrs.axis, in_shapes[0])

    def infer_shape(self, layer, in_shapes):
        first = in_shapes[0]
        axis = self.axis(layer, in_shapes)
        for name, s in zip(layer.inputs, in_shapes):
            if len(s) != len(first) or s[:axis] + s[axis + 1:] != first[:axis] + first[axis + 1:]:
                raise ShapeError(f"{layer.where}: inputs must match in every axis but axis "
                                 f"{axis + batch_offset(layer)}, but '{layer.inputs[0]}' is {fmt_shape(first)} and "
                                 f"'{name}' is {fmt_shape(s)}")
        return first[:axis] + (sum(s[axis] for s in in_shapes),) + first[axis + 1:]

    def formula(self, layer, in_shapes, out_shape):
        axis = self.axis(layer, in_shapes)
        return (f"axis {axis + batch_offset(layer)}: {' + '.join(str(s[axis]) for s in in_shapes)} = "
                f"{out_shape[axis]}")

    def reference(self, layer, inputs, weights):
        return np.concatenate(inputs, axis=self.axis(layer, [x.shape[1:] for x in inputs]) + 1)

    def kernel_args(self, layer, in_shapes, out_shape):
        # Per outer index (the axes before `axis`), input i is one contiguous block of the output row.
        axis = self.axis(layer, in_shapes)
        sizes = [int(np.prod(s[axis:])) for s in in_shapes]
        offsets = [int(x) for x in np.cumsum([0] + sizes[:-1])]
        outer = int(np.prod(out_shape[:axis]))
        # in_place: per input, computed straight into its part (the memory plan decides; lowering fills it in)
        return {"parts": list(zip(sizes, offsets)), "outer": outer, "contiguous": outer == 1,
                "row": int(np.prod(out_shape[axis:])), "in_place": [False] * len(in_shapes), "aliased": False}
