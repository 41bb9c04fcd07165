"""Pointwise activations: one NumPy reference each, and one C expression of `v` each in
templates/ops/_activations.c.j2 (a macro named as the op), shared by ops/unary.c.j2; and prelu, whose
learned slope per channel needs its own kernel."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ModelError
from . import register
from .base import Op, attr, c_float, fmt_shape, int_at_least, parse_float, parse_optional_float


class _Pointwise(Op):
    template = "ops/unary.c.j2"

    def infer_shape(self, layer, in_shapes):
        return in_shapes[0]

    def constants(self, attrs) -> dict[str, str | None]:
        """The C float literals its expression needs (templates/ops/_activations.c.j2), by name."""
        return {}

    def kernel_args(self, layer, in_shapes, out_shape):
        return {"N": int(np.prod(out_shape)), "op": self.name, "constants": self.constants(layer.attrs)}


@register
class Relu(_Pointwise):
    name = "relu"
    onnx_types = ("Relu",)
    onnx_attributes = {}
    doc = "max(x, 0)"

    def reference(self, layer, inputs, weights):
        return np.maximum(inputs[0], 0.0)


@dataclass(frozen=True)
class LeakyReluAttrs:
    negative_slope: float = attr(parse_float, 0.01, doc="slope for x < 0")


@register
class LeakyRelu(_Pointwise):
    name = "leaky_relu"
    onnx_types = ("LeakyRelu",)
    onnx_attributes = {"negative_slope": ("alpha", 0.01)}
    Attrs = LeakyReluAttrs
    doc = "x if x > 0 else negative_slope·x"

    def reference(self, layer, inputs, weights):
        x = inputs[0]
        return np.where(x > 0, x, layer.attrs.negative_slope * x)

    def constants(self, attrs):
        return {"slope": c_float(attrs.negative_slope)}


@register
class Relu6(_Pointwise):
    name = "relu6"
    doc = "min(max(x, 0), 6)"

    def reference(self, layer, inputs, weights):
        return np.clip(inputs[0], 0.0, 6.0)


@dataclass(frozen=True)
class ClipAttrs:
    min: float | None = attr(parse_optional_float, None, doc="lower bound (none: unbounded)")
    max: float | None = attr(parse_optional_float, None, doc="upper bound (none: unbounded)")


@register
class Clip(_Pointwise):
    name = "clip"
    onnx_types = ("Clip",)
    Attrs = ClipAttrs
    doc = "min(max(x, min), max), as torch.clamp"

    def infer_shape(self, layer, in_shapes):
        a = layer.attrs
        if a.min is not None and a.max is not None and a.min > a.max:
            raise ModelError(f"{layer.where}: attribute 'min' ({a.min}) is greater than 'max' ({a.max})")
        return in_shapes[0]

    def reference(self, layer, inputs, weights):
        a = layer.attrs
        return np.clip(inputs[0], -np.inf if a.min is None else a.min, np.inf if a.max is None else a.max)

    def constants(self, attrs):
        return {"lo": None if attrs.min is None else c_float(attrs.min),
                "hi": None if attrs.max is None else c_float(attrs.max)}


@register
class Sigmoid(_Pointwise):
    name = "sigmoid"
    onnx_types = ("Sigmoid",)
    onnx_attributes = {}
    doc = "1 / (1 + exp(−x))"

    def reference(self, layer, inputs, weights):
        return 1.0 / (1.0 + np.exp(-inputs[0]))


@register
class Tanh(_Pointwise):
    name = "tanh"
    onnx_types = ("Tanh",)
    onnx_attributes = {}
    doc = "tanh(x)"

    def reference(self, layer, inputs, weights):
        return np.tanh(inputs[0])


@dataclass(frozen=True)
class PReluAttrs:
    num_parameters: int = attr(int_at_least(1), 1, doc="1 (one slope for all channels) or C (one per channel), "
                                                       "as torch.nn.PReLU")


@register
class PRelu(Op):
    name = "prelu"
    per_sample = True
    onnx_types = ("PRelu",)
    Attrs = PReluAttrs
    template = "ops/prelu.c.j2"
    doc = ("parametric ReLU: x if x ≥ 0 else weight[c]·x, with c the index on axis 1 (the channels); "
           "weight [num_parameters]")

    def infer_shape(self, layer, in_shapes):
        n, c = layer.attrs.num_parameters, in_shapes[0][0]
        if n not in (1, c):
            raise ModelError(f"{layer.where}: attribute 'num_parameters' = {n} must be 1 or the number of "
                             f"channels ({c}) of the input {fmt_shape(in_shapes[0])}")
        return in_shapes[0]

    def weight_shapes(self, layer, in_shapes):
        return {"weight": (layer.attrs.num_parameters,)}

    def init_weights(self, layer, in_shapes, rng):
        return {"weight": rng.uniform(0.05, 0.5, layer.attrs.num_parameters)}  # torch's default is 0.25

    def macs(self, layer, in_shapes, out_shape):
        return int(np.prod(out_shape))

    def reference(self, layer, inputs, weights):
        x = inputs[0]
        slope = weights["weight"].astype(np.float64).reshape((1, -1) + (1,) * (x.ndim - 2))
        return np.where(x >= 0, x, slope * x)

    def kernel_args(self, layer, in_shapes, out_shape):
        per_channel = layer.attrs.num_parameters > 1
        return {"C": out_shape[0], "inner": int(np.prod(out_shape[1:], dtype=np.int64)),
                "per_channel": per_channel}
