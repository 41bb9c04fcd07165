"""Ops that move no data: flatten, reshape, squeeze, unsqueeze, identity and dropout reuse their input's memory
(is_view)."""
from dataclasses import dataclass

import numpy as np

from ..errors import ModelError, ShapeError
from . import register
from .base import Op, attr, batch_offset, fmt_shape, parse_float, resolve_axis
from .slicing import axes_list, optional_axes


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
    onnx_types = ("Reshape",)
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


# ---------------------------------------------------------------- squeeze, unsqueeze
@dataclass(frozen=True)
class SqueezeAttrs:
    axes: tuple[int, ...] | None = attr(optional_axes, None, doc="the axes to remove, as torch.squeeze's dim (0 is the "
                                                                "batch; negative counts from the end); one whose size "
                                                                "is not 1 stays, as in torch; none: every per-sample "
                                                                "axis of size 1")


@register
class Squeeze(Reshape):  # a reshape whose target shape comes from the axes (formula, reference)
    name = "squeeze"
    onnx_types = ("Squeeze",)
    Attrs = SqueezeAttrs
    doc = "remove axes of size 1, as torch.squeeze / ONNX Squeeze; no kernel, no copy"

    def removed(self, layer, shape) -> set[int]:
        if layer.attrs.axes is None:
            return {k for k, d in enumerate(shape) if d == 1}
        axes = [resolve_axis(layer, "axes", a, shape) for a in layer.attrs.axes]
        return {k for k in axes if shape[k] == 1}

    def infer_shape(self, layer, in_shapes):
        shape = in_shapes[0]
        out = tuple(d for k, d in enumerate(shape) if k not in self.removed(layer, shape))
        if not out:
            raise ShapeError(f"{layer.where}: squeezing {fmt_shape(shape)} leaves no per-sample axis; keep one")
        return out


@dataclass(frozen=True)
class UnsqueezeAttrs:
    axes: tuple[int, ...] = attr(axes_list, doc="where the new size-1 axes go in the output, as torch.unsqueeze's dim "
                                            "and ONNX Unsqueeze's axes (0 is the batch; negative counts from the "
                                            "output's end)")


@register
class Unsqueeze(Reshape):
    name = "unsqueeze"
    onnx_types = ("Unsqueeze",)
    Attrs = UnsqueezeAttrs
    doc = "insert axes of size 1, as torch.unsqueeze / ONNX Unsqueeze; no kernel, no copy"

    def infer_shape(self, layer, in_shapes):
        shape = in_shapes[0]
        rank = len(shape) + len(layer.attrs.axes)
        inserted = [resolve_axis(layer, "axes", a, (1,) * rank) for a in layer.attrs.axes]
        if len(set(inserted)) != len(inserted):
            raise ShapeError(f"{layer.where}: attribute 'axes' {list(layer.attrs.axes)} names an output axis twice "
                             f"(the output has {rank + batch_offset(layer)} axes)")
        rest = iter(shape)
        return tuple(1 if k in inserted else next(rest) for k in range(rank))
