"""Data movement: transpose (permute the axes) and pad (constant padding on any per-sample axis)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import BatchAxisError, ModelError, ShapeError
from . import register
from .base import Op, attr, batch_offset, c_float, fmt_shape, parse_float
from .strided import contiguous_strides, loop_nest


def _perm(v, where):
    if (not isinstance(v, (list, tuple)) or not v
            or not all(isinstance(d, int) and not isinstance(d, bool) for d in v)):
        raise ModelError(f"{where} must be a non-empty list of axis numbers, got {v!r}")
    return tuple(int(d) for d in v)


@dataclass(frozen=True)
class TransposeAttrs:
    perm: tuple[int, ...] = attr(_perm, doc="output axis k is input axis perm[k], as torch.permute's dims: a "
                                            "permutation of the axes 0..rank−1 counting the batch as 0, which "
                                            "stays first, e.g. [0, 2, 3, 1] for N×C×H×W -> N×H×W×C")


@register
class Transpose(Op):
    name = "transpose"
    onnx_types = ("Transpose",)
    Attrs = TransposeAttrs
    template = "ops/transpose.c.j2"
    doc = "permute the axes, as torch.permute / ONNX Transpose (the batch axis, 0, stays first)"

    def axes(self, layer, shape) -> tuple[int, ...]:
        """The permutation as indices into the layer's shape (without the batch axis when it leaves it out)."""
        perm, offset = layer.attrs.perm, batch_offset(layer)
        rank = len(shape) + offset
        if sorted(perm) != list(range(rank)):
            raise ShapeError(f"{layer.where}: attribute 'perm' {list(perm)} is not a permutation of the axes "
                             f"0..{rank - 1} of the rank-{rank} input ({'N×' if offset else ''}{fmt_shape(shape)})")
        if offset and perm[0] != 0:
            raise BatchAxisError(f"{layer.where}: attribute 'perm' {list(perm)} moves the batch axis (0), but the model "
                                 "computes each sample on its own; axis 0 must stay first (or compile for a fixed "
                                 "batch: `batch: N` in the description)")
        return tuple(p - offset for p in perm[offset:])

    def infer_shape(self, layer, in_shapes):
        shape = in_shapes[0]
        return tuple(shape[p] for p in self.axes(layer, shape))

    def formula(self, layer, in_shapes, out_shape):
        return f"perm {list(layer.attrs.perm)}: {fmt_shape(in_shapes[0])} -> {fmt_shape(out_shape)}"

    def reference(self, layer, inputs, weights):
        return inputs[0].transpose(0, *(p + 1 for p in self.axes(layer, inputs[0].shape[1:])))

    def kernel_args(self, layer, in_shapes, out_shape):
        in_strides = contiguous_strides(in_shapes[0])
        nest = loop_nest(out_shape, [contiguous_strides(out_shape),
                                     [in_strides[p] for p in self.axes(layer, in_shapes[0])]])
        return nest.template_args()


def _pads(v, where):
    if not isinstance(v, (list, tuple)) or not v or not all(isinstance(d, int) and not isinstance(d, bool) for d in v):
        raise ModelError(f"{where} must be a list of integers [begin_0, ..., begin_r-1, end_0, ..., end_r-1], "
                         f"got {v!r}")
    if any(d < 0 for d in v):
        raise ModelError(f"{where} must be >= 0 (negative padding, i.e. cropping, is not supported), got {list(v)}")
    if len(v) % 2:
        raise ModelError(f"{where} must have an even length (begins, then ends), got {len(v)} values: {list(v)}")
    return tuple(int(d) for d in v)


@dataclass(frozen=True)
class PadAttrs:
    pads: tuple[int, ...] = attr(_pads, doc="[begin_0, ..., begin_r−1, end_0, ..., end_r−1] over the per-sample "
                                            "axes (ONNX order), integers ≥ 0")
    value: float = attr(parse_float, 0.0, doc="the value of the padding")


@register
class Pad(Op):
    name = "pad"
    onnx_types = ("Pad",)
    Attrs = PadAttrs
    template = "ops/pad.c.j2"
    doc = ("pad every per-sample axis with a constant `value` (ONNX Pad in constant mode; reflect and edge modes "
           "are not supported)")

    def begin_end(self, layer, shape):
        pads, rank = layer.attrs.pads, len(shape)
        if len(pads) != 2 * rank:
            raise ShapeError(f"{layer.where}: attribute 'pads' has {len(pads)} values, but a rank-{rank} input "
                             f"({fmt_shape(shape)}) needs 2·{rank} = {2 * rank} (begins, then ends)")
        return pads[:rank], pads[rank:]

    def infer_shape(self, layer, in_shapes):
        begin, end = self.begin_end(layer, in_shapes[0])
        return tuple(d + b + e for d, b, e in zip(in_shapes[0], begin, end))

    def formula(self, layer, in_shapes, out_shape):
        begin, end = self.begin_end(layer, in_shapes[0])
        return ", ".join(f"{d} + {b} + {e} = {o}" for d, b, e, o in zip(in_shapes[0], begin, end, out_shape))

    def reference(self, layer, inputs, weights):
        x = inputs[0]
        begin, end = self.begin_end(layer, x.shape[1:])
        return np.pad(x, [(0, 0)] + list(zip(begin, end)), constant_values=layer.attrs.value)

    def kernel_args(self, layer, in_shapes, out_shape):
        begin, _ = self.begin_end(layer, in_shapes[0])
        out_strides = contiguous_strides(out_shape)
        offset = sum(b * s for b, s in zip(begin, out_strides))
        nest = loop_nest(in_shapes[0], [out_strides, contiguous_strides(in_shapes[0])], [offset, 0])
        return {"fill": tuple(out_shape) != tuple(in_shapes[0]), "N": int(np.prod(out_shape)),
                "value": c_float(layer.attrs.value), **nest.template_args()}
