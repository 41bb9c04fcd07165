"""Ops over several inputs: add (element-wise, equal shapes) and concat (channel axis)."""
import numpy as np

from ..errors import ShapeError
from . import register
from .base import Op, fmt_shape


@register
class Add(Op):
    name = "add"
    arity = None
    template = "ops/add.c.j2"
    doc = "element-wise sum of two or more inputs of equal shape (residual connections)"

    def infer_shape(self, layer, in_shapes):
        first = in_shapes[0]
        for name, s in zip(layer.inputs, in_shapes):
            if s != first:
                raise ShapeError(f"{layer.where}: inputs must have equal shapes, but '{layer.inputs[0]}' is "
                                 f"{fmt_shape(first)} and '{name}' is {fmt_shape(s)}")
        return first

    def reference(self, layer, inputs, weights):
        return sum(inputs[1:], inputs[0])

    def kernel_args(self, layer, in_shapes, out_shape):
        return {"N": int(np.prod(out_shape))}


@register
class Concat(Op):
    name = "concat"
    arity = None
    template = "ops/concat.c.j2"
    doc = "join inputs along the channel axis; all other sizes must match"

    def infer_shape(self, layer, in_shapes):
        first = in_shapes[0]
        for name, s in zip(layer.inputs, in_shapes):
            if len(s) != len(first) or s[1:] != first[1:]:
                raise ShapeError(f"{layer.where}: inputs must match in every axis but channels, but "
                                 f"'{layer.inputs[0]}' is {fmt_shape(first)} and '{name}' is {fmt_shape(s)}")
        return (sum(s[0] for s in in_shapes),) + tuple(first[1:])

    def reference(self, layer, inputs, weights):
        return np.concatenate(inputs, axis=1)

    def kernel_args(self, layer, in_shapes, out_shape):
        # Per sample, input i is one contiguous block placed after the blocks before it.
        sizes = [int(np.prod(s)) for s in in_shapes]
        offsets = [int(x) for x in np.cumsum([0] + sizes[:-1])]
        return {"parts": list(zip(sizes, offsets))}
