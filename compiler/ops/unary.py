"""Element-wise unary math: exp, log, sqrt, erf, abs, neg, reciprocal, as torch's functions of the same names.

Like the activations (ops/activations.py), each is a NumPy reference and a C expression of `v` in
templates/ops/_activations.c.j2, run by ops/unary.c.j2. Outside an op's domain the result is IEEE's, as in
torch: log(0) = −inf, log(−1) = sqrt(−1) = NaN, 1/0 = inf.
"""
from __future__ import annotations

import numpy as np

from . import register
from .activations import _erf, _Pointwise


@register
class Exp(_Pointwise):
    name = "exp"
    onnx_types = ("Exp",)
    onnx_attributes = {}
    doc = "exp(x)"

    def reference(self, layer, inputs, weights):
        with np.errstate(over="ignore"):
            return np.exp(inputs[0])


@register
class Log(_Pointwise):
    name = "log"
    onnx_types = ("Log",)
    onnx_attributes = {}
    doc = "natural logarithm; −inf at 0, NaN below"

    def reference(self, layer, inputs, weights):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(inputs[0])


@register
class Sqrt(_Pointwise):
    name = "sqrt"
    onnx_types = ("Sqrt",)
    onnx_attributes = {}
    doc = "square root; NaN below 0"

    def reference(self, layer, inputs, weights):
        with np.errstate(invalid="ignore"):
            return np.sqrt(inputs[0])


@register
class Erf(_Pointwise):
    name = "erf"
    onnx_types = ("Erf",)
    onnx_attributes = {}
    doc = "the error function 2/√π ∫₀ˣ exp(−t²) dt"

    def reference(self, layer, inputs, weights):
        return _erf(inputs[0])


@register
class Abs(_Pointwise):
    name = "abs"
    onnx_types = ("Abs",)
    onnx_attributes = {}
    doc = "|x|"

    def reference(self, layer, inputs, weights):
        return np.abs(inputs[0])


@register
class Neg(_Pointwise):
    name = "neg"
    onnx_types = ("Neg",)
    onnx_attributes = {}
    doc = "−x"

    def reference(self, layer, inputs, weights):
        return -inputs[0]


@register
class Reciprocal(_Pointwise):
    name = "reciprocal"
    onnx_types = ("Reciprocal",)
    onnx_attributes = {}
    doc = "1 / x; ±inf at ±0"

    def reference(self, layer, inputs, weights):
        with np.errstate(divide="ignore"):
            return 1.0 / inputs[0]
