"""Internal ops made by the optimization passes: a conv2d, dense or batchnorm with its epilogue fused in.

    y = act(conv(x) + bias [+ residual])   with act: leaky slope, then clamp to [act_min, act_max], or one of
                                          the pointwise ops FUSABLE (sigmoid, tanh, silu, hardswish, hardsigmoid,
                                          gelu) with its attributes

They never appear in model files (the description front end rejects them); their NumPy
`reference` defines them, so the interpreter can run an optimized graph and be compared
with the unoptimized one.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..errors import ModelError, ShapeError
from . import REGISTRY, register
from .base import attr, c_float, fmt_shape, parse_optional_float
from .batchnorm import BatchNorm, BatchNormAttrs
from .dense import Dense, DenseAttrs
from .spatial import Conv2d, Conv2dAttrs


@dataclass(frozen=True)
class Epilogue:
    """The fields both fused ops add to their base op's attributes."""
    negative_slope: float | None = attr(parse_optional_float, None,
                                        doc="leaky slope for values < 0 (none: no leaky step)")
    act_min: float | None = attr(parse_optional_float, None, doc="clamp below (relu: 0; none: unbounded)")
    act_max: float | None = attr(parse_optional_float, None, doc="clamp above (relu6: 6; none: unbounded)")
    activation: str | None = attr(lambda v, where: _parse_fusable(v, where), None,
                                  doc="a pointwise op applied last (one of FUSABLE; none: no such step)")
    activation_attrs: tuple = attr(lambda v, where: tuple(v), (), doc="that op's attributes, as (name, value) pairs")


# The pointwise ops a conv/dense epilogue computes besides relu, relu6, clip and leaky_relu (the fields above).
FUSABLE = ("sigmoid", "tanh", "silu", "hardswish", "hardsigmoid", "gelu")


def _parse_fusable(v: Any, where: str) -> str | None:
    if v is not None and v not in FUSABLE:
        raise ModelError(f"{where} must be one of {', '.join(FUSABLE)} or none, got {v!r}")
    return v


@dataclass(frozen=True)
class FusedConv2dAttrs(Epilogue, Conv2dAttrs):
    pass


@dataclass(frozen=True)
class FusedDenseAttrs(Epilogue, DenseAttrs):
    pass


@dataclass(frozen=True)
class FusedBatchNormAttrs(Epilogue, BatchNormAttrs):
    pass


def has_activation(attrs) -> bool:
    return (attrs.negative_slope is not None or attrs.act_min is not None or attrs.act_max is not None
            or attrs.activation is not None)


def _activation_op(attrs) -> tuple[Any, Any]:
    """(the fused pointwise op, its parsed attributes)."""
    spec = REGISTRY[attrs.activation]
    return spec, spec.Attrs(**dict(attrs.activation_attrs))


def epilogue_reference(attrs, y: np.ndarray, inputs: list[np.ndarray]) -> np.ndarray:
    if len(inputs) > 1:
        y = y + inputs[1].reshape(y.shape)
    if attrs.negative_slope is not None:
        y = np.where(y > 0, y, attrs.negative_slope * y)
    if attrs.act_min is not None:
        y = np.maximum(y, attrs.act_min)
    if attrs.act_max is not None:
        y = np.minimum(y, attrs.act_max)
    if attrs.activation is not None:
        spec, op_attrs = _activation_op(attrs)
        y = spec.reference(SimpleNamespace(attrs=op_attrs), [y], {})
    return y


@dataclass(frozen=True)
class ActivationStep:
    """One step of a fused activation, as the kernels' templates render it (templates/ops/_epilogue.c.j2):
    kind "leaky" (v < 0: value·v), "clamp_below" (v < value: value), "clamp_above" (v > value: value),
    "affine" (value·v + offset), or the op it computes: "sigmoid", "tanh", "silu", "hardswish", "gelu" (erf) and
    "gelu_tanh"."""
    kind: str
    value: str = ""  # a float32 C literal
    offset: str = ""  # a float32 C literal (affine)


def activation_steps(attrs) -> tuple[ActivationStep, ...]:
    """The fused activation of a layer's attributes, in the order the reference applies it."""
    steps = []
    if attrs.negative_slope is not None:
        steps.append(ActivationStep("leaky", c_float(attrs.negative_slope)))
    if attrs.act_min is not None:
        steps.append(ActivationStep("clamp_below", c_float(attrs.act_min)))
    if attrs.act_max is not None:
        steps.append(ActivationStep("clamp_above", c_float(attrs.act_max)))
    if attrs.activation is not None:
        _, a = _activation_op(attrs)
        if attrs.activation == "hardsigmoid":
            steps += [ActivationStep("affine", c_float(a.alpha), c_float(a.beta)), ActivationStep("clamp_below", "0.0f"),
                      ActivationStep("clamp_above", "1.0f")]
        elif attrs.activation == "gelu":
            steps.append(ActivationStep("gelu_tanh" if a.approximate == "tanh" else "gelu"))
        else:
            steps.append(ActivationStep(attrs.activation))
    return tuple(steps)


def _check_residual(layer, in_shapes, out_shape) -> None:
    if len(in_shapes) > 2:
        raise ShapeError(f"{layer.where}: takes the input and at most one residual, got {len(in_shapes)} inputs")
    if len(in_shapes) == 2 and int(np.prod(in_shapes[1])) != int(np.prod(out_shape)):
        raise ShapeError(f"{layer.where}: residual {fmt_shape(in_shapes[1])} does not match the output "
                         f"{fmt_shape(out_shape)}")


class WithEpilogue:
    """What a fused op adds to its base op (listed after it): the input, then an optional residual of the
    output's size; its shape, weights and MACs are the base op's on the first input, its value the base op's
    with the epilogue applied, and its kernel arguments say which steps to render."""
    arity = None
    internal = True

    def infer_shape(self, layer, in_shapes):
        out = super().infer_shape(layer, in_shapes[:1])
        _check_residual(layer, in_shapes, out)
        return out

    def weight_shapes(self, layer, in_shapes):
        return super().weight_shapes(layer, in_shapes[:1])

    def macs(self, layer, in_shapes, out_shape):
        return super().macs(layer, in_shapes[:1], out_shape)

    def reference(self, layer, inputs, weights):
        return epilogue_reference(layer.attrs, super().reference(layer, inputs[:1], weights), inputs)

    def kernel_args(self, layer, in_shapes, out_shape):
        args = super().kernel_args(layer, in_shapes[:1], out_shape)
        args.update(residual=len(in_shapes) > 1, activation=activation_steps(layer.attrs))
        return args


@register
class FusedConv2d(WithEpilogue, Conv2d):
    name = "fused_conv2d"
    Attrs = FusedConv2dAttrs
    doc = ("internal (made by opt passes): conv2d, + residual (optional 2nd input), then activation "
           "(leaky slope, clamp, or one of sigmoid, tanh, silu, hardswish, hardsigmoid, gelu)")


@register
class FusedDense(WithEpilogue, Dense):
    name = "fused_dense"
    Attrs = FusedDenseAttrs
    doc = "internal (made by opt passes): dense, + residual (optional 2nd input), then activation"


@register
class FusedBatchNorm(WithEpilogue, BatchNorm):
    """A batchnorm the conv before it could not absorb (it reads a concat or a model input: DenseNet's and
    pre-activation nets' BN-ReLU), with the activation after it: one pass over the tensor instead of two."""
    name = "fused_batchnorm"
    Attrs = FusedBatchNormAttrs
    doc = "internal (made by opt passes): batchnorm, + residual (optional 2nd input), then activation"
