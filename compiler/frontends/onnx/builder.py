"""The builder: accumulates native layers while the handlers walk the ONNX nodes, and the helpers the
handlers share (constants per sample, axes, 1-D windows as 2-D, padding).

A model imports batched (each sample on its own: shapes leave out the batch axis) unless some node acts
across the batch axis or an input has no other axis; then the front end imports it again as a whole-tensor
model (`batched` False: shapes are the whole tensors', fixed). Handlers see an activation's shape as the
graph holds it; `b.sample(x)` is its shape without the batch (what per-sample ops such as conv see) and
`b.rank(x)` its ONNX rank, whichever way the model imports. `b.fail_batch` says a node needs the whole-tensor
import.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import BatchAxisError, ConvcWarning, ModelError
from ...ir import Layer
from ...limits import DEFAULT_LIMITS, Limits, check_layer_attributes, check_shape
from ...ops import REGISTRY
from ...ops.base import parse_attrs
from ...shapes import output_shape
from .reading import LATEST_OPSET


@dataclass(frozen=True)
class Act:
    """A run-time tensor: the layer computing it and its shape in the graph (per sample when batched)."""
    layer: str
    shape: tuple[int, ...]


Value = Act | np.ndarray


class Builder:
    """Accumulates native layers, their per-sample shapes and weights while walking the ONNX nodes."""

    def __init__(self, source: str, reserved: set[str], batched: bool = True, limits: Limits = DEFAULT_LIMITS):
        self.source = source
        self.limits = limits
        self.batched = batched  # False: a whole-tensor model (see the module docstring)
        self.layers: list[Layer] = []
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.weights: dict[str, np.ndarray] = {}
        self.reserved = reserved  # every ONNX tensor name: helper layers never take one
        self.node = None  # the ONNX node being converted, for error messages
        self.opset = LATEST_OPSET  # the model's default-domain opset
        self.upgraded_from: int | None = None  # the opset before onnx's converter upgraded it to 7
        self.batch = 1  # the batch size the model was exported with (1 when symbolic)
        self.used: set[str] = set()  # tensor names some node or graph output reads

    @property
    def at(self) -> str:
        n = self.node
        if n is None:
            return self.source
        return f"{self.source}: node '{n.name or n.output[0]}' ({n.op_type})"

    def fail(self, message: str) -> ModelError:
        return ModelError(f"{self.at}: {message}")

    def fail_batch(self, message: str) -> BatchAxisError:
        """This node acts across the batch axis: the model can only import as a whole tensor."""
        return BatchAxisError(f"{self.at}: {message}")

    def sample(self, x: "Act") -> tuple[int, ...]:
        """x's shape without the batch axis."""
        return x.shape if self.batched else x.shape[1:]

    def lead(self, x: "Act") -> list[int]:
        """x's batch axis as the graph shows it: [] when batched, [N] in a whole-tensor model."""
        return [] if self.batched else [x.shape[0]]

    def rank(self, x: "Act") -> int:
        """x's ONNX rank, the batch axis counted."""
        return len(x.shape) + (1 if self.batched else 0)

    def helper_name(self, hint: str) -> str:
        name, k = hint, 1
        while name in self.shapes or name in self.reserved:
            name = f"{hint}_{k}"
            k += 1
        return name

    def add(self, name: str, op: str, attrs: dict[str, Any], inputs: list[Act],
            weights: dict[str, np.ndarray] | None = None) -> Act:
        if op not in REGISTRY:
            raise self.fail(f"needs convc's native op '{op}', which this convc does not have")
        if name in self.shapes:
            name = self.helper_name(name)
        source = self.at
        parsed = parse_attrs(REGISTRY[op].Attrs, attrs, f"{source}: layer '{name}' ({op})")
        layer = Layer(name, op, parsed, tuple(a.layer for a in inputs), source, batched=self.batched)
        check_layer_attributes(layer, self.limits)  # before a shape rule sees them, as the pipeline does
        with warnings.catch_warnings():  # the pipeline's shape inference warns once, later
            warnings.simplefilter("ignore", ConvcWarning)
            shape = output_shape(layer, [a.shape for a in inputs])
        check_shape(layer, shape, self.limits)
        self.layers.append(layer)
        self.shapes[name] = shape
        for suffix, value in (weights or {}).items():
            self.weights[f"{name}.{suffix}"] = np.ascontiguousarray(value, dtype=np.float32)
        return Act(name, shape)

    def helper(self, hint: str, op: str, attrs: dict[str, Any], inputs: list[Act],
               weights: dict[str, np.ndarray] | None = None) -> Act:
        return self.add(self.helper_name(hint), op, attrs, inputs, weights)

    def constant(self, value: np.ndarray, hint: str) -> Act:
        """A constant as an activation operand (a `constant` layer; per sample when batched)."""
        value = np.asarray(value, dtype=np.float32)
        if value.ndim == 0:
            value = value.reshape(1)
        return self.helper(hint, "constant", {"shape": list(value.shape)}, [], {"value": value})


# ---------------------------------------------------------------- helpers shared by the op mappings
def per_sample_constant(b: Builder, value: np.ndarray, full_rank: int, what: str) -> np.ndarray:
    """A constant broadcast against activations of ONNX rank `full_rank` -> the same constant per sample
    (in a whole-tensor model: the constant as it is).

    When batched, its axes at and before the batch axis must be 1 (a constant cannot vary across the batch).
    """
    value = np.asarray(value)
    if not b.batched:
        return value
    lead = value.ndim - full_rank + 1  # axes aligned with the batch axis or before it
    if lead > 0:
        if any(d != 1 for d in value.shape[:lead]):
            raise b.fail_batch(f"{what} has shape {list(value.shape)}, which varies along the batch axis of a "
                               f"rank-{full_rank} activation")
        value = value.reshape(value.shape[lead:])
    return value


def operand(b: Builder, v: Value, full_rank: int, hint: str) -> Act:
    if isinstance(v, Act):
        return v
    return b.constant(per_sample_constant(b, v, full_rank, f"constant operand '{hint}'"), hint)


def axis_per_sample(b: Builder, axis: int, full_rank: int, what: str = "axis") -> int:
    """An ONNX axis of a rank-`full_rank` tensor as an index into its shape in the graph."""
    a = axis + full_rank if axis < 0 else axis
    if not 0 <= a < full_rank:
        raise b.fail(f"{what} {axis} is out of range for a rank-{full_rank} tensor")
    if not b.batched:
        return a
    if a == 0:
        raise b.fail_batch(f"{what} {axis} is the batch axis")
    return a - 1


def const_input(b: Builder, v: Value | None, what: str) -> np.ndarray | None:
    if v is None:
        return None
    if isinstance(v, Act):
        raise b.fail(f"{what} must be a constant (an initializer or computable at compile time), "
                     f"but it is computed from the model input")
    return v


def ints(v: np.ndarray | None) -> list[int] | None:
    return None if v is None else [int(x) for x in np.asarray(v).reshape(-1)]


def first_act(b: Builder, ins: list[Value | None], what: str = "the data input") -> Act:
    x = ins[0]
    if not isinstance(x, Act):
        raise b.fail(f"{what} must come from the model input")
    return x


def lift_1d(b: Builder, x: Act, attrs: dict, name: str) -> tuple[Act, dict]:
    """A window over N×C×L runs as a 2-D window over N×C×1×L: the input gains a size-1 height and the
    attributes a leading 1 (kernel, strides, dilations) or zero (pads)."""
    lifted = dict(attrs)
    for key in ("kernel_shape", "strides", "dilations"):
        if key in attrs:
            lifted[key] = [1, *attrs[key]]
    if "pads" in attrs:
        if len(attrs["pads"]) != 2:
            raise b.fail(f"attribute 'pads' must have 2 values for a 1-D window, got {list(attrs['pads'])}")
        lifted["pads"] = [0, attrs["pads"][0], 0, attrs["pads"][1]]
    c, length = b.sample(x)
    x2 = b.helper(f"{name}_2d", "reshape", {"shape": [*b.lead(x), c, 1, length]}, [x])
    return x2, lifted


def unlift_1d(b: Builder, y: Act, name: str) -> Act:
    k, _, length = b.sample(y)
    return b.add(name, "reshape", {"shape": [*b.lead(y), k, length]}, [y])


def spatial_2d(b: Builder, x: Act) -> None:
    if len(b.sample(x)) != 3:
        raise b.fail(f"convc supports 1-D and 2-D windows (N×C×L, N×C×H×W); this input is "
                     f"N×{'×'.join(map(str, b.sample(x)))}")


def window_padding(b: Builder, attrs: dict, x: Act, kernel: list[int], strides: list[int],
                   dilations: list[int]) -> list[int]:
    """ONNX auto_pad / pads -> [top, left, bottom, right]."""
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad in ("NOTSET", ""):
        pads = attrs.get("pads", [0, 0, 0, 0])
        if len(pads) != 4:
            raise b.fail(f"attribute 'pads' must have 4 values for a 2-D window, got {pads}")
        if any(p < 0 for p in pads):
            raise b.fail(f"negative 'pads' {pads} are not supported")
        return [int(pads[0]), int(pads[1]), int(pads[2]), int(pads[3])]
    if auto_pad == "VALID":
        return [0, 0, 0, 0]
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        lo_hi = []
        for size, k, s, d in zip(b.sample(x)[1:], kernel, strides, dilations):
            total = max((math.ceil(size / s) - 1) * s + d * (k - 1) + 1 - size, 0)
            small, big = total // 2, total - total // 2
            lo_hi.append((small, big) if auto_pad == "SAME_UPPER" else (big, small))
        return [lo_hi[0][0], lo_hi[1][0], lo_hi[0][1], lo_hi[1][1]]
    raise b.fail(f"attribute 'auto_pad' {auto_pad!r} is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID")


def pair(b: Builder, attrs: dict, key: str, default: int) -> list[int]:
    v = attrs.get(key, [default, default])
    if len(v) != 2:
        raise b.fail(f"attribute '{key}' must have 2 values for a 2-D window, got {list(v)}")
    return [int(x) for x in v]

