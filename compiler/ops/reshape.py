"""Ops that move no data: flatten, reshape, identity and dropout reuse their input's memory (is_view)."""
from dataclasses import dataclass

import numpy as np

from ..errors import ModelError, ShapeError
from . import register
from .base import Op, attr, fmt_shape, parse_float


@register
class Flatten(Op):
    name = "flatten"
    per_sample = True
    onnx_types = ("Flatten",)
    is_view = True
    doc = "C×H×W -> C·H·W features (row-major, as torch.flatten(x, 1))"

    def infer_shape(self, layer, in_shapes):
        return (int(np.prod(in_shapes[0])),)

    def window(self, layer, in_shapes):
        return None

    def reference(self, layer, inputs, weights):
        return inputs[0].reshape(inputs[0].shape[0], -1)


def _rate(v, where):
    from ..errors import ModelError
    x = parse_float(v, where)
    if not 0.0 <= x < 1.0:
        raise ModelError(f"{where} must be in [0, 1), got {v!r}")
    return x


@dataclass(frozen=True)
class DropoutAttrs:
    rate: float = attr(_rate, 0.5, doc="training-time drop probability; ignored at inference")


@register
class Dropout(Op):
    name = "dropout"
    onnx_types = ("Dropout",)
    Attrs = DropoutAttrs
    is_view = True
    doc = "identity at inference"

    def infer_shape(self, layer, in_shapes):
        return in_shapes[0]

    def reference(self, layer, inputs, weights):
        return inputs[0]


def _target_shape(v, where):
    if (not isinstance(v, (list, tuple)) or not v
            or not all(isinstance(d, int) and not isinstance(d, bool) and (d >= 1 or d == -1) for d in v)):
        raise ModelError(f"{where} must be a non-empty list of integers >= 1 (one may be -1), got {v!r}")
    if list(v).count(-1) > 1:
        raise ModelError(f"{where} may contain at most one -1 (the size inferred from the others), got {v!r}")
    return tuple(int(d) for d in v)


@dataclass(frozen=True)
class ReshapeAttrs:
    shape: tuple[int, ...] = attr(_target_shape, doc="per-sample target shape; at most one -1, inferred from the "
                                                     "element count (0 is not special)")


@register
class Reshape(Op):
    name = "reshape"
    onnx_types = ("Reshape", "Squeeze", "Unsqueeze")
    Attrs = ReshapeAttrs
    is_view = True
    doc = "the same values in row-major order under another per-sample shape, as numpy.reshape of each sample"

    def infer_shape(self, layer, in_shapes):
        target, count = layer.attrs.shape, int(np.prod(in_shapes[0]))
        known = int(np.prod([d for d in target if d != -1]))
        if -1 in target:
            if count % known:
                raise ShapeError(f"{layer.where}: cannot reshape {fmt_shape(in_shapes[0])} ({count} values) to "
                                 f"attribute 'shape' {list(target)}: {count} is not a multiple of {known}")
            return tuple(count // known if d == -1 else d for d in target)
        if known != count:
            raise ShapeError(f"{layer.where}: cannot reshape {fmt_shape(in_shapes[0])} ({count} values) to "
                             f"attribute 'shape' {fmt_shape(target)} ({known} values): the counts differ")
        return target

    def formula(self, layer, in_shapes, out_shape):
        return f"{fmt_shape(in_shapes[0])} -> {fmt_shape(out_shape)}"

    def reference(self, layer, inputs, weights):
        x = inputs[0]
        return x.reshape(x.shape[0], *self.infer_shape(layer, [x.shape[1:]]))


@register
class Identity(Op):
    name = "identity"
    onnx_types = ("Identity", "Cast", "CastLike")  # casts to float32 only (the handler refuses others)
    is_view = True
    doc = "the input unchanged, y = x (ONNX Identity, and Cast/CastLike to float32); no kernel, no copy"

    def infer_shape(self, layer, in_shapes):
        return in_shapes[0]

    def reference(self, layer, inputs, weights):
        return inputs[0]
