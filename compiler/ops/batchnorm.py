"""batchnorm at inference, as torch.nn.BatchNorm2d/1d in eval mode."""
from dataclasses import dataclass

import numpy as np

from . import register
from .base import Op, attr, parse_positive_float


@dataclass(frozen=True)
class BatchNormAttrs:
    eps: float = attr(parse_positive_float, 1e-5, doc="added to the running variance")


@register
class BatchNorm(Op):
    name = "batchnorm"
    per_sample = True
    onnx_types = ("BatchNormalization",)
    Attrs = BatchNormAttrs
    template = "ops/batchnorm.c.j2"
    doc = ("(x − running_mean)/√(running_var + eps)·weight + bias per channel; "
           "weight, bias, running_mean, running_var [C]")

    def infer_shape(self, layer, in_shapes):
        return in_shapes[0]

    def weight_shapes(self, layer, in_shapes):
        c = (in_shapes[0][0],)
        return {"weight": c, "bias": c, "running_mean": c, "running_var": c}

    def optional_weights(self, layer):
        return frozenset({"num_batches_tracked"})  # in every PyTorch state_dict; unused at inference

    def init_weights(self, layer, in_shapes, rng):
        c = in_shapes[0][0]
        return {"weight": rng.uniform(0.5, 1.5, c), "bias": rng.uniform(-0.2, 0.2, c),
                "running_mean": rng.uniform(-0.2, 0.2, c), "running_var": rng.uniform(0.5, 1.5, c)}

    def macs(self, layer, in_shapes, out_shape):
        return int(np.prod(out_shape))

    def scale_shift(self, layer, weights):
        """The affine form y = x·scale + shift, in float64."""
        scale = weights["weight"].astype(np.float64) / np.sqrt(
            weights["running_var"].astype(np.float64) + layer.attrs.eps)
        shift = weights["bias"].astype(np.float64) - weights["running_mean"].astype(np.float64) * scale
        return scale, shift

    def reference(self, layer, inputs, weights):
        x = inputs[0]
        shape = (1, -1) + (1,) * (x.ndim - 2)
        w = {k: v.astype(np.float64).reshape(shape) for k, v in weights.items() if k != "num_batches_tracked"}
        return (x - w["running_mean"]) / np.sqrt(w["running_var"] + layer.attrs.eps) * w["weight"] + w["bias"]

    def lower_weights(self, layer, weights):
        scale, shift = self.scale_shift(layer, weights)
        return {"scale": scale, "shift": shift}

    def kernel_args(self, layer, in_shapes, out_shape):
        return {"C": out_shape[0], "inner": int(np.prod(out_shape[1:], dtype=np.int64)), "residual": False,
                "activation": ()}
