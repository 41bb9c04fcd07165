"""Pointwise activations: one NumPy reference each, and one C expression of `v` each in
templates/ops/_activations.c.j2 (a macro named as the op), shared by ops/unary.c.j2; and prelu, whose
learned slope per channel needs its own kernel."""
from __future__ import annotations

import math
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
        with np.errstate(over="ignore"):  # exp(−x) = inf for x < −709: 1/inf = 0, the limit
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


# ---------------------------------------------------------------- hardswish, hardsigmoid, silu, gelu, mish,
# softplus, elu, selu (PyTorch's definitions; the fusable ones also run in a conv/dense epilogue: ops/fused.py)
def _erf(x: np.ndarray) -> np.ndarray:
    """The error function, element by element (NumPy has none; math.erf is correctly rounded in float64)."""
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def parse_choice(*choices: str):
    def parse(v, where: str) -> str:
        if v not in choices:
            raise ModelError(f"{where} must be one of {', '.join(map(repr, choices))}, got {v!r}")
        return v
    return parse


def parse_nonzero_float(v, where: str) -> float:
    x = parse_float(v, where)
    if x == 0:
        raise ModelError(f"{where} must not be 0")
    return x


@register
class Hardswish(_Pointwise):
    name = "hardswish"
    onnx_types = ("HardSwish",)
    onnx_attributes = {}
    doc = "x · min(max(x + 3, 0), 6) / 6, as torch.nn.functional.hardswish"

    def reference(self, layer, inputs, weights):
        x = inputs[0]
        return x * np.clip(x + 3.0, 0.0, 6.0) / 6.0


@dataclass(frozen=True)
class HardsigmoidAttrs:
    alpha: float = attr(parse_float, 1.0 / 6.0, doc="slope (PyTorch: 1/6; ONNX's HardSigmoid default is 0.2)")
    beta: float = attr(parse_float, 0.5, doc="offset")


@register
class Hardsigmoid(_Pointwise):
    name = "hardsigmoid"
    onnx_types = ("HardSigmoid",)
    onnx_attributes = {"alpha": ("alpha", 0.2), "beta": ("beta", 0.5)}
    Attrs = HardsigmoidAttrs
    doc = "min(max(alpha·x + beta, 0), 1); the defaults are torch.nn.functional.hardsigmoid"

    def reference(self, layer, inputs, weights):
        a = layer.attrs
        return np.clip(a.alpha * inputs[0] + a.beta, 0.0, 1.0)

    def constants(self, attrs):
        return {"alpha": c_float(attrs.alpha), "beta": c_float(attrs.beta)}


@register
class Silu(_Pointwise):
    name = "silu"
    doc = "x · sigmoid(x) (swish); ONNX's Sigmoid × Mul imports as two layers that opt level ≥ 1 fuses"

    def reference(self, layer, inputs, weights):
        x = inputs[0]
        with np.errstate(over="ignore"):  # x / inf = −0 for x < −709, the limit
            return x / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class GeluAttrs:
    approximate: str = attr(parse_choice("none", "tanh"), "none",
                            doc='"none": x·Φ(x) with the erf; "tanh": the tanh approximation (torch\'s approximate)')


GELU_TANH_C = math.sqrt(2.0 / math.pi)


@register
class Gelu(_Pointwise):
    name = "gelu"
    onnx_types = ("Gelu",)
    onnx_attributes = {"approximate": ("approximate", "none")}
    Attrs = GeluAttrs
    doc = ("x · Φ(x) = x/2 · (1 + erf(x/√2)), or with approximate = \"tanh\" x/2 · (1 + tanh(√(2/π)·(x + "
           "0.044715·x³))), as torch.nn.functional.gelu")

    def reference(self, layer, inputs, weights):
        x = inputs[0]
        if layer.attrs.approximate == "tanh":
            return 0.5 * x * (1.0 + np.tanh(GELU_TANH_C * (x + 0.044715 * x ** 3)))
        return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))

    def constants(self, attrs):
        return {"tanh_c": c_float(GELU_TANH_C) if attrs.approximate == "tanh" else None}


@register
class Mish(_Pointwise):
    name = "mish"
    onnx_types = ("Mish",)
    onnx_attributes = {}
    doc = "x · tanh(softplus(x)), as torch.nn.functional.mish"

    def reference(self, layer, inputs, weights):
        x = inputs[0]
        return x * np.tanh(np.logaddexp(0.0, x))


@dataclass(frozen=True)
class SoftplusAttrs:
    beta: float = attr(parse_nonzero_float, 1.0, doc="β")
    threshold: float = attr(parse_float, 20.0, doc="where β·x > threshold the result is x (linear)")


@register
class Softplus(_Pointwise):
    name = "softplus"
    onnx_types = ("Softplus",)
    onnx_attributes = {}
    Attrs = SoftplusAttrs
    doc = "log(1 + exp(β·x)) / β, and x where β·x > threshold, as torch.nn.functional.softplus"

    def reference(self, layer, inputs, weights):
        a, x = layer.attrs, inputs[0]
        return np.where(a.beta * x > a.threshold, x, np.logaddexp(0.0, a.beta * x) / a.beta)

    def constants(self, attrs):
        return {"beta": c_float(attrs.beta), "threshold": c_float(attrs.threshold)}


@dataclass(frozen=True)
class EluAttrs:
    alpha: float = attr(parse_float, 1.0, doc="the value approached for x → −∞ is −alpha")


@register
class Elu(_Pointwise):
    name = "elu"
    onnx_types = ("Elu",)
    onnx_attributes = {"alpha": ("alpha", 1.0)}
    Attrs = EluAttrs
    doc = "x if x > 0 else alpha·(exp(x) − 1), as torch.nn.functional.elu"

    def reference(self, layer, inputs, weights):
        x = inputs[0]
        return np.where(x > 0, x, layer.attrs.alpha * np.expm1(np.minimum(x, 0.0)))

    def constants(self, attrs):
        return {"alpha": c_float(attrs.alpha)}


# torch.nn.functional.selu's constants (Klambauer et al. 2017), as ONNX's Selu defaults.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


@register
class Selu(_Pointwise):
    name = "selu"
    onnx_types = ("Selu",)
    doc = (f"scale · (x if x > 0 else alpha·(exp(x) − 1)) with alpha = {SELU_ALPHA:.10f}, scale = {SELU_SCALE:.10f}, "
           "as torch.nn.functional.selu")

    def reference(self, layer, inputs, weights):
        x = inputs[0]
        return SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0.0)))

    def constants(self, attrs):
        return {"alpha": c_float(SELU_ALPHA), "scale": c_float(SELU_SCALE)}
