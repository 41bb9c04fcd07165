"""Ops that move no data: flatten and dropout reuse their input's memory (is_view)."""
from dataclasses import dataclass

import numpy as np

from . import register
from .base import Op, attr, parse_float


@register
class Flatten(Op):
    name = "flatten"
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
    Attrs = DropoutAttrs
    is_view = True
    doc = "identity at inference"

    def infer_shape(self, layer, in_shapes):
        return in_shapes[0]

    def reference(self, layer, inputs, weights):
        return inputs[0]
