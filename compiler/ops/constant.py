"""constant: a tensor from the weights, the same for every sample (ONNX Constant and initializer operands)."""
from dataclasses import dataclass

import numpy as np

from . import register
from .base import Op, attr, int_list


@dataclass(frozen=True)
class ConstantAttrs:
    shape: tuple[int, ...] = attr(int_list(1), doc="per-sample shape of the tensor (the weight `value` has exactly "
                                                  "this shape; a scalar is [1])")


@register
class Constant(Op):
    name = "constant"
    Attrs = ConstantAttrs
    arity = 0
    is_constant = True
    doc = ("a fixed tensor, weight `value` [shape], the same for every sample; it takes no inputs and may be an "
           "operand of any op (it lives in the weights: no kernel, no copy per sample)")

    def infer_shape(self, layer, in_shapes):
        return layer.attrs.shape

    def weight_shapes(self, layer, in_shapes):
        return {"value": layer.attrs.shape}

    def init_weights(self, layer, in_shapes, rng):
        return {"value": rng.uniform(-1.0, 1.0, layer.attrs.shape)}

    def reference(self, layer, inputs, weights):
        # One sample; the interpreter repeats a source layer's tensor for every sample of the batch.
        return weights["value"].astype(np.float64)[None]
