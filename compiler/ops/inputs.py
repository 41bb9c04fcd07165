"""The model input: a placeholder whose per-sample shape the description gives."""
from dataclasses import dataclass

from . import register
from .base import Op, Shape, attr


def _parse_shape(v, where):
    from ..errors import ModelError
    if not isinstance(v, (list, tuple)) or not v or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in v):
        raise ModelError(f"{where} must be [C, H, W], [F] or another non-empty list of positive integers, got {v!r}")
    return tuple(int(d) for d in v)


@dataclass(frozen=True)
class InputAttrs:
    shape: tuple[int, ...] = attr(_parse_shape, doc="per-sample shape, [C, H, W] or [F] (any rank ≥ 1)")


@register
class InputOp(Op):
    name = "input"
    Attrs = InputAttrs
    arity = 0
    doc = "the model's input tensor (not a layer: declared by `input:` in the description)"

    def infer_shape(self, layer, in_shapes) -> Shape:
        return layer.attrs.shape

    def reference(self, layer, inputs, weights):
        raise AssertionError("inputs are bound by the interpreter, not computed")
