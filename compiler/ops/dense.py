"""dense (fully connected), as torch.nn.Linear; a C×H×W input is read as its C·H·W flattening."""
import math
from dataclasses import dataclass

import numpy as np

from . import register
from .base import Op, attr, int_at_least, parse_bool


@dataclass(frozen=True)
class DenseAttrs:
    units: int = attr(int_at_least(1), doc="output features")
    bias: bool = attr(parse_bool, True, doc="add a learned bias per unit")


@register
class Dense(Op):
    name = "dense"
    per_sample = True
    onnx_types = ("Gemm",)
    Attrs = DenseAttrs
    template = "ops/dense.c.j2"
    doc = "y = W·x + b; weight [units, in_features], bias [units]"

    def infer_shape(self, layer, in_shapes):
        return (layer.attrs.units,)

    def weight_shapes(self, layer, in_shapes):
        shapes = {"weight": (layer.attrs.units, int(np.prod(in_shapes[0])))}
        if layer.attrs.bias:
            shapes["bias"] = (layer.attrs.units,)
        return shapes

    def init_weights(self, layer, in_shapes, rng):
        shapes = self.weight_shapes(layer, in_shapes)
        fan_in = shapes["weight"][1]
        out = {"weight": rng.uniform(-1, 1, shapes["weight"]) * math.sqrt(3.0 / fan_in)}
        if "bias" in shapes:
            out["bias"] = rng.uniform(-1, 1, shapes["bias"]) / math.sqrt(fan_in)
        return out

    def macs(self, layer, in_shapes, out_shape):
        return int(np.prod(in_shapes[0])) * layer.attrs.units

    def window(self, layer, in_shapes):
        return "global" if len(in_shapes[0]) > 1 else None

    def formula(self, layer, in_shapes, out_shape):
        return f"{int(np.prod(in_shapes[0]))} -> {layer.attrs.units}"

    def reference(self, layer, inputs, weights):
        x = inputs[0].reshape(inputs[0].shape[0], -1)
        y = x @ weights["weight"].T
        if layer.attrs.bias:
            y = y + weights["bias"]
        return y

    def kernel_args(self, layer, in_shapes, out_shape):
        return {"IN": int(np.prod(in_shapes[0])), "OUT": layer.attrs.units, "has_bias": layer.attrs.bias,
                "residual": False, "activation": (), "simd": False, "parallel": False}
