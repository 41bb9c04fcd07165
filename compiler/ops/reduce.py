"""Reductions over given axes: reduce_mean, reduce_max and reduce_sum, as torch.mean / torch.amax / torch.sum with
dim and keepdim, and ONNX ReduceMean / ReduceMax / ReduceSum.

Their kernel (templates/ops/reduce.c.j2) walks the input once in memory order and folds every value into its
output cell, so a reduction over a leading axis runs along contiguous rows. The mean and max over H×W of
a C×H×W tensor become global_avgpool / global_maxpool at opt level ≥ 1 (compiler/passes/reduce_to_global_pool.py),
which read the channel-blocked tensors of the fast convolutions directly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..errors import ShapeError
from . import register
from .base import Op, Shape, attr, batch_offset, c_float, fmt_shape, parse_bool, resolve_axis
from .slicing import axes_list
from .strided import contiguous_strides, loop_nest


@dataclass(frozen=True)
class ReduceAttrs:
    axes: tuple[int, ...] = attr(axes_list, doc="the axes to reduce, as torch's dim (0 is the batch, 1 the channels; "
                                                "negative counts from the end), each at most once")
    keepdims: bool = attr(parse_bool, False, doc="keep each reduced axis with size 1, as torch's keepdim")


class _Reduce(Op):
    Attrs = ReduceAttrs
    template = "ops/reduce.c.j2"
    # The NumPy reduction; the kernel keeps the maximum (else the sum) from `init`, then divides by the count.
    numpy_name: ClassVar[str]
    maximum: ClassVar[bool] = False
    init: ClassVar[str] = "0.0f"
    divide: ClassVar[bool] = False

    def reduced(self, layer, shape: Shape) -> list[int]:
        """The reduced per-sample axes, sorted."""
        axes = [resolve_axis(layer, "axes", a, shape) for a in layer.attrs.axes]
        if len(set(axes)) != len(axes):
            raise ShapeError(f"{layer.where}: attribute 'axes' {list(layer.attrs.axes)} names an axis twice "
                             f"(the input has {len(shape) + batch_offset(layer)} axes)")
        return sorted(axes)

    def infer_shape(self, layer, in_shapes):
        shape = in_shapes[0]
        reduced = self.reduced(layer, shape)
        if layer.attrs.keepdims:
            return tuple(1 if k in reduced else d for k, d in enumerate(shape))
        out = tuple(d for k, d in enumerate(shape) if k not in reduced)
        if not out:
            raise ShapeError(f"{layer.where}: reducing every per-sample axis of {fmt_shape(shape)} without 'keepdims' "
                             "leaves no per-sample axis; set keepdims: true")
        return out

    def window(self, layer, in_shapes):
        return "global" if set(self.reduced(layer, in_shapes[0])) & {1, 2} and len(in_shapes[0]) == 3 else None

    def formula(self, layer, in_shapes, out_shape):
        shape = in_shapes[0]
        reduced = self.reduced(layer, shape)
        count = int(np.prod([shape[k] for k in reduced]))
        sizes = f"{' × '.join(str(shape[k]) for k in reduced)} = " if len(reduced) > 1 else ""
        return (f"over axes {[k + batch_offset(layer) for k in reduced]} ({sizes}{count} values): "
                f"{fmt_shape(shape)} -> {fmt_shape(out_shape)}")

    def reference(self, layer, inputs, weights):
        x = inputs[0]
        axes = tuple(k + 1 for k in self.reduced(layer, x.shape[1:]))
        return getattr(np, self.numpy_name)(x, axis=axes, keepdims=layer.attrs.keepdims)

    def kernel_args(self, layer, in_shapes, out_shape):
        # Loops over the input in memory order; the output cell of a value has stride 0 along reduced axes.
        shape = in_shapes[0]
        reduced = self.reduced(layer, shape)
        kept = tuple(1 if k in reduced else d for k, d in enumerate(shape))
        out_strides = [0 if k in reduced else s for k, s in enumerate(contiguous_strides(kept))]
        nest = loop_nest(shape, [out_strides, contiguous_strides(shape)])
        count = int(np.prod([shape[k] for k in reduced]))
        return {"N": int(np.prod(out_shape)), "init": self.init, "maximum": self.maximum,
                "divisor": c_float(count) if self.divide else "", **nest.template_args()}


@register
class ReduceMean(_Reduce):
    name = "reduce_mean"
    onnx_types = ("ReduceMean",)
    numpy_name = "mean"
    divide = True
    doc = "the mean over `axes`, as torch.mean(x, dim=axes, keepdim=keepdims) / ONNX ReduceMean"


@register
class ReduceMax(_Reduce):
    name = "reduce_max"
    onnx_types = ("ReduceMax",)
    numpy_name = "max"
    maximum = True
    init = "-INFINITY"
    doc = "the maximum over `axes`, as torch.amax(x, dim=axes, keepdim=keepdims) / ONNX ReduceMax"


@register
class ReduceSum(_Reduce):
    name = "reduce_sum"
    onnx_types = ("ReduceSum",)
    numpy_name = "sum"
    doc = "the sum over `axes`, as torch.sum(x, dim=axes, keepdim=keepdims) / ONNX ReduceSum"
