"""Normalization by statistics of the sample itself (no running statistics): layernorm, groupnorm, instancenorm.

Each computes a mean and a (biased) variance over a set of values of one sample, normalizes them with
1/√(var + eps) and applies a learned affine transform:
- layernorm, as torch.nn.LayerNorm / ONNX LayerNormalization: over the axes `axis`..`last_axis` (by default
  the trailing axes from `axis` on); weight and bias have the normalized shape. `axis: 1, last_axis: 1` on
  N×C×H×W normalizes each pixel over its channels, as ConvNeXt's LayerNorm2d (which permutes to N×H×W×C,
  normalizes the last axis and permutes back; the fold_transposed_layernorm pass makes that one layer).
- groupnorm, as torch.nn.GroupNorm / ONNX GroupNormalization: over each group of C/num_groups channels and
  all their positions; weight and bias [C].
- instancenorm, as torch.nn.InstanceNorm2d(affine=True) in eval mode without running statistics / ONNX
  InstanceNormalization: over each channel's positions; weight and bias [C].
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ModelError, ShapeError
from . import register
from .base import Op, attr, c_float, fmt_shape, int_at_least, parse_int, parse_positive_float, resolve_axis

# The layernorm kernel normalizes this many positions at once when the normalized axes are not the last ones
# (each position's statistics over the normalized axes, the positions' values contiguous: one vector each).
LAYERNORM_TILE = 64


def _normalize(x: np.ndarray, axes: tuple[int, ...], eps: float) -> np.ndarray:
    """(x − mean)/√(var + eps), mean and biased variance over `axes` of the batched array x."""
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps)


class _Normalization(Op):
    """What the three share: an affine weight and bias (of the op's `weight_shapes`) and about three operations per
    value (the mean, the variance, the affine normalization)."""

    def init_weights(self, layer, in_shapes, rng):
        shape = self.weight_shapes(layer, in_shapes)["weight"]
        return {"weight": rng.uniform(0.5, 1.5, shape), "bias": rng.uniform(-0.2, 0.2, shape)}

    def macs(self, layer, in_shapes, out_shape):
        return 3 * int(np.prod(out_shape))


# ---------------------------------------------------------------- layernorm
@dataclass(frozen=True)
class LayerNormAttrs:
    axis: int = attr(parse_int, -1, doc="the first normalized axis, as ONNX's axis (0 is the batch, negative counts "
                                        "from the end); torch's normalized_shape is the shape from here on")
    last_axis: int = attr(parse_int, -1, doc="the last normalized axis (default −1: through the last axis, as torch "
                                             "and ONNX); axis: 1 with last_axis: 1 normalizes each pixel of "
                                             "N×C×H×W over its channels (ConvNeXt's LayerNorm2d)")
    eps: float = attr(parse_positive_float, 1e-5, doc="added to the variance")


@register
class LayerNorm(_Normalization):
    name = "layernorm"
    onnx_types = ("LayerNormalization",)
    Attrs = LayerNormAttrs
    template = "ops/layernorm.c.j2"
    doc = ("(x − mean)/√(var + eps)·weight + bias, mean and variance over the axes axis..last_axis of each "
           "sample, as torch.nn.LayerNorm / F.layer_norm and ONNX LayerNormalization; weight and bias have the "
           "normalized shape; inputs of any rank")

    def axes(self, layer, shape) -> tuple[int, int]:
        """The first and last normalized axes as indices into the layer's shape."""
        a = resolve_axis(layer, "axis", layer.attrs.axis, shape)
        b = resolve_axis(layer, "last_axis", layer.attrs.last_axis, shape)
        if b < a:
            raise ShapeError(f"{layer.where}: attribute 'last_axis' = {layer.attrs.last_axis} comes before 'axis' = "
                             f"{layer.attrs.axis} in the {fmt_shape(shape)} input; the normalized axes run from "
                             "'axis' to 'last_axis'")
        return a, b

    def infer_shape(self, layer, in_shapes):
        self.axes(layer, in_shapes[0])
        return in_shapes[0]

    def normalized_shape(self, layer, shape) -> tuple[int, ...]:
        a, b = self.axes(layer, shape)
        return tuple(shape[a:b + 1])

    def weight_shapes(self, layer, in_shapes):
        shape = self.normalized_shape(layer, in_shapes[0])
        return {"weight": shape, "bias": shape}

    def window(self, layer, in_shapes):
        shape = in_shapes[0]
        a, b = self.axes(layer, shape)
        # Over the spatial axes of a C×H×W input, each value depends on the whole plane.
        return "global" if len(shape) == 3 and b >= 1 else None

    def formula(self, layer, in_shapes, out_shape):
        shape = self.normalized_shape(layer, in_shapes[0])
        count = f"{fmt_shape(shape)} = {int(np.prod(shape))}" if len(shape) > 1 else fmt_shape(shape)
        return f"statistics over {count} values"

    def reference(self, layer, inputs, weights):
        x = inputs[0]
        a, b = self.axes(layer, x.shape[1:])
        axes = tuple(range(a + 1, b + 2))
        shape = (1,) * (a + 1) + x.shape[a + 1:b + 2] + (1,) * (x.ndim - b - 2)
        w = weights["weight"].astype(np.float64).reshape(shape)
        bias = weights["bias"].astype(np.float64).reshape(shape)
        return _normalize(x, axes, layer.attrs.eps) * w + bias

    def kernel_args(self, layer, in_shapes, out_shape):
        shape = in_shapes[0]
        a, b = self.axes(layer, shape)
        outer, norm = int(np.prod(shape[:a], dtype=np.int64)), int(np.prod(shape[a:b + 1], dtype=np.int64))
        inner = int(np.prod(shape[b + 1:], dtype=np.int64))
        tile = min(LAYERNORM_TILE, inner)
        return {"outer": outer, "norm": norm, "inner": inner, "block": norm * inner, "rows": inner == 1,
                "tile": tile, "tiles_end": inner - inner % tile, "tail": inner % tile,
                "tail_start": inner - inner % tile, "inv_norm": c_float(1.0 / norm), "eps": c_float(layer.attrs.eps)}


# ---------------------------------------------------------------- groupnorm, instancenorm
class _ChannelGroups(_Normalization):
    """Statistics over groups of whole channels of a C×... input; weight and bias [C]."""
    per_sample = True
    template = "ops/groupnorm.c.j2"
    min_rank = 1

    def groups(self, layer, shape) -> int:
        raise NotImplementedError

    def infer_shape(self, layer, in_shapes):
        shape = in_shapes[0]
        if len(shape) < self.min_rank:
            raise ShapeError(f"{layer.where}: expects channels and positions (C×H×W, C×L, ...), got shape "
                             f"{fmt_shape(shape)}")
        self.groups(layer, shape)
        return shape

    def weight_shapes(self, layer, in_shapes):
        c = (in_shapes[0][0],)
        return {"weight": c, "bias": c}

    def window(self, layer, in_shapes):
        return "global" if len(in_shapes[0]) == 3 else None

    def formula(self, layer, in_shapes, out_shape):
        shape = in_shapes[0]
        g = self.groups(layer, shape)
        per = int(np.prod(shape)) // g
        return f"{g} group(s) of {shape[0] // g} channel(s) × {int(np.prod(shape[1:]))} = {per} values"

    def reference(self, layer, inputs, weights):
        x = inputs[0]
        n, c = x.shape[:2]
        g = self.groups(layer, x.shape[1:])
        y = _normalize(x.reshape(n, g, -1), (2,), layer.attrs.eps).reshape(x.shape)
        shape = (1, c) + (1,) * (x.ndim - 2)
        return y * weights["weight"].astype(np.float64).reshape(shape) + weights["bias"].astype(np.float64).reshape(shape)

    def kernel_args(self, layer, in_shapes, out_shape):
        shape = in_shapes[0]
        g = self.groups(layer, shape)
        inner = int(np.prod(shape[1:], dtype=np.int64))
        block = shape[0] // g * inner
        return {"G": g, "CG": shape[0] // g, "inner": inner, "block": block, "inv_block": c_float(1.0 / block),
                "eps": c_float(layer.attrs.eps)}


@dataclass(frozen=True)
class GroupNormAttrs:
    num_groups: int = attr(int_at_least(1), doc="groups of channels, dividing C")
    eps: float = attr(parse_positive_float, 1e-5, doc="added to the variance")


@register
class GroupNorm(_ChannelGroups):
    name = "groupnorm"
    onnx_types = ("GroupNormalization",)
    Attrs = GroupNormAttrs
    doc = ("(x − mean)/√(var + eps)·weight[c] + bias[c], mean and variance over each group of C/num_groups channels "
           "and all their positions, as torch.nn.GroupNorm / ONNX GroupNormalization; weight, bias [C]")

    def groups(self, layer, shape):
        g = layer.attrs.num_groups
        if shape[0] % g:
            raise ModelError(f"{layer.where}: attribute 'num_groups' = {g} must divide the input channels "
                             f"({shape[0]} in {fmt_shape(shape)})")
        return g


@dataclass(frozen=True)
class InstanceNormAttrs:
    eps: float = attr(parse_positive_float, 1e-5, doc="added to the variance")


@register
class InstanceNorm(_ChannelGroups):
    name = "instancenorm"
    onnx_types = ("InstanceNormalization",)
    Attrs = InstanceNormAttrs
    min_rank = 2
    doc = ("(x − mean)/√(var + eps)·weight[c] + bias[c], mean and variance over each channel's positions, as "
           "torch.nn.InstanceNorm2d(affine=True) without running statistics / ONNX InstanceNormalization; "
           "weight, bias [C]; C×H×W, C×L or any rank ≥ 2")

    def groups(self, layer, shape):
        return shape[0]
