"""Internal ops made by the optimization passes: a conv2d or dense with its epilogue fused in.

    y = act(conv(x) + bias [+ residual])   with act: leaky slope, then clamp to [act_min, act_max]

They never appear in model files (the description front end rejects them); their NumPy
`reference` defines them, so the interpreter can run an optimized graph and be compared
with the unoptimized one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ShapeError
from . import register
from .base import attr, c_float, fmt_shape, parse_optional_float
from .dense import Dense, DenseAttrs
from .spatial import Conv2d, Conv2dAttrs


@dataclass(frozen=True)
class Epilogue:
    """The fields both fused ops add to their base op's attributes."""
    negative_slope: float | None = attr(parse_optional_float, None,
                                        doc="leaky slope for values < 0 (none: no leaky step)")
    act_min: float | None = attr(parse_optional_float, None, doc="clamp below (relu: 0; none: unbounded)")
    act_max: float | None = attr(parse_optional_float, None, doc="clamp above (relu6: 6; none: unbounded)")


@dataclass(frozen=True)
class FusedConv2dAttrs(Epilogue, Conv2dAttrs):
    pass


@dataclass(frozen=True)
class FusedDenseAttrs(Epilogue, DenseAttrs):
    pass


def has_activation(attrs) -> bool:
    return attrs.negative_slope is not None or attrs.act_min is not None or attrs.act_max is not None


def epilogue_reference(attrs, y: np.ndarray, inputs: list[np.ndarray]) -> np.ndarray:
    if len(inputs) > 1:
        y = y + inputs[1].reshape(y.shape)
    if attrs.negative_slope is not None:
        y = np.where(y > 0, y, attrs.negative_slope * y)
    if attrs.act_min is not None:
        y = np.maximum(y, attrs.act_min)
    if attrs.act_max is not None:
        y = np.minimum(y, attrs.act_max)
    return y


def epilogue_c_statements(attrs) -> list[str]:
    """The activation as C statements updating the float `v`.

    Comparisons rather than fmaxf/fminf: without -ffast-math those are library calls, one per value.
    """
    out = []
    if attrs.negative_slope is not None:
        out.append(f"v = v > 0.0f ? v : {c_float(attrs.negative_slope)} * v;")
    if attrs.act_min is not None:
        out.append(f"v = v < {c_float(attrs.act_min)} ? {c_float(attrs.act_min)} : v;")
    if attrs.act_max is not None:
        out.append(f"v = v > {c_float(attrs.act_max)} ? {c_float(attrs.act_max)} : v;")
    return out


def epilogue_vector_statements(attrs) -> list[str]:
    """The activation as GNU C vector statements updating `v` (a convc_vec), with bit masks as selects."""
    out = []
    if attrs.negative_slope is not None:
        out.append("{ const convc_ivec m = v > convc_splat(0.0f); "
                   f"v = (convc_vec)((m & (convc_ivec)v) | (~m & (convc_ivec)(v * {c_float(attrs.negative_slope)}))); }}")
    if attrs.act_min is not None:
        lo = f"convc_splat({c_float(attrs.act_min)})"
        out.append(f"{{ const convc_ivec m = v < {lo}; v = (convc_vec)((~m & (convc_ivec)v) | (m & (convc_ivec){lo})); }}")
    if attrs.act_max is not None:
        hi = f"convc_splat({c_float(attrs.act_max)})"
        out.append(f"{{ const convc_ivec m = v > {hi}; v = (convc_vec)((~m & (convc_ivec)v) | (m & (convc_ivec){hi})); }}")
    return out


def _check_residual(layer, in_shapes, out_shape) -> None:
    if len(in_shapes) > 2:
        raise ShapeError(f"{layer.where}: takes the input and at most one residual, got {len(in_shapes)} inputs")
    if len(in_shapes) == 2 and int(np.prod(in_shapes[1])) != int(np.prod(out_shape)):
        raise ShapeError(f"{layer.where}: residual {fmt_shape(in_shapes[1])} does not match the output "
                         f"{fmt_shape(out_shape)}")


@register
class FusedConv2d(Conv2d):
    name = "fused_conv2d"
    Attrs = FusedConv2dAttrs
    arity = None
    internal = True
    doc = ("internal (made by opt passes): conv2d, + residual (optional 2nd input), then activation "
           "(leaky slope, clamp)")

    def infer_shape(self, layer, in_shapes):
        out = super().infer_shape(layer, in_shapes[:1])
        _check_residual(layer, in_shapes, out)
        return out

    def reference(self, layer, inputs, weights):
        return epilogue_reference(layer.attrs, super().reference(layer, inputs[:1], weights), inputs)

    def kernel_args(self, layer, in_shapes, out_shape):
        args = super().kernel_args(layer, in_shapes[:1], out_shape)
        args.update(residual=len(in_shapes) > 1, act=epilogue_c_statements(layer.attrs),
                    vact=epilogue_vector_statements(layer.attrs))
        return args


@register
class FusedDense(Dense):
    name = "fused_dense"
    Attrs = FusedDenseAttrs
    arity = None
    internal = True
    doc = "internal (made by opt passes): dense, + residual (optional 2nd input), then activation"

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
        args.update(residual=len(in_shapes) > 1, act=epilogue_c_statements(layer.attrs))
        return args
