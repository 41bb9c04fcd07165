"""ONNX model (.onnx) -> Graph, the same IR the native description produces.

Everything after parsing is shared with the native format. The batch is ONNX's leading axis of every
activation; the Graph holds per-sample shapes, so ONNX axis k is per-sample axis k − 1.
Subgraphs whose inputs are all constants (initializers, Constant, shapes, ...) are folded here with
onnx's reference evaluator; every other node maps onto one or a few native layers.

Needs the optional `onnx` package (`pip install convc[onnx]`).
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import ConvcWarning, ModelError
from ..ir import Graph, Layer
from ..limits import DEFAULT_LIMITS, Limits, check_layer_attributes, check_shape
from ..ops import REGISTRY
from ..ops.base import attrs_to_dict, parse_attrs

try:
    import onnx
    import onnx.version_converter
    from onnx import numpy_helper
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ModelError("reading .onnx models needs the onnx package: pip install convc[onnx]") from e

MAX_MODEL_BYTES = 2 * 1024 ** 3
LATEST_OPSET = onnx.defs.onnx_opset_version()
# Ops never folded even with constant inputs: their value is not a function of their inputs.
NONDETERMINISTIC = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                    "Bernoulli"}


@dataclass(frozen=True)
class Act:
    """A run-time tensor: the layer computing it and its per-sample shape."""
    layer: str
    shape: tuple[int, ...]


Value = Act | np.ndarray


# ---------------------------------------------------------------- reading the file
def read_model(path: Path, allow_outside_paths: bool = False) -> "onnx.ModelProto":
    """Parse the protobuf and pull in external data (only from inside the model's folder unless allowed)."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ModelError(f"{path}: cannot read the ONNX model: {e.strerror}") from None
    if size > MAX_MODEL_BYTES:
        raise ModelError(f"{path}: the model is {size} bytes; protobuf files are limited to 2 GiB")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # google.protobuf DecodeError, OSError, ...
        raise ModelError(f"{path}: not a readable ONNX model (malformed or truncated): "
                         f"{type(e).__name__}: {e}") from None
    if not model.graph.node and not model.graph.input:
        raise ModelError(f"{path}: not a readable ONNX model: it has no graph (empty or not an ONNX file)")
    load_external_data(model, path, allow_outside_paths)
    return model


def _model_tensors(model) -> list:
    tensors = list(model.graph.initializer)
    for node in model.graph.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                tensors.append(a.t)
    return tensors


def load_external_data(model, path: Path, allow_outside_paths: bool) -> None:
    base = path.parent.resolve()
    for tensor in _model_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        where = f"{path}: tensor '{tensor.name}'"
        if not location:
            raise ModelError(f"{where}: external data without a location")
        if "\0" in location:
            raise ModelError(f"{where}: external data location {location!r} contains a NUL byte")
        file = (base / location).resolve()
        if not allow_outside_paths and not file.is_relative_to(base):
            raise ModelError(f"{where}: external data file {location!r} lies outside the model's folder {base}; "
                             "pass allow_outside_paths=True to allow it")
        try:
            offset = int(info.get("offset", 0))
            length = int(info["length"]) if "length" in info else None
            if file.exists() and not file.is_file():  # a FIFO or /dev/zero would be read forever
                raise ModelError(f"{where}: external data {location!r} is not a regular file")
            with open(file, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                # Checked before reading: a lying length would allocate it, a lying offset read nothing.
                if offset < 0 or offset > size or (length is not None and not 0 <= length <= size - offset):
                    raise ModelError(f"{where}: external data {location!r} has {size} bytes; the tensor claims "
                                     f"{length if length is not None else 'the rest'} bytes at offset {offset}")
                f.seek(offset)
                data = f.read() if length is None else f.read(length)
        except (OSError, ValueError) as e:
            if isinstance(e, ModelError):
                raise
            raise ModelError(f"{where}: cannot read external data {location!r}: {e}") from None
        tensor.raw_data = data
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT


# ---------------------------------------------------------------- the builder
class Builder:
    """Accumulates native layers, their per-sample shapes and weights while walking the ONNX nodes."""

    def __init__(self, source: str, reserved: set[str], limits: Limits = DEFAULT_LIMITS):
        self.source = source
        self.limits = limits
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
        layer = Layer(name, op, parsed, tuple(a.layer for a in inputs), source)
        check_layer_attributes(layer, self.limits)  # before a shape rule sees them, as the pipeline does
        with warnings.catch_warnings():  # the pipeline's shape inference warns once, later
            warnings.simplefilter("ignore", ConvcWarning)
            shape = tuple(int(d) for d in layer.spec.infer_shape(layer, [a.shape for a in inputs]))
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
        """A per-sample constant as an activation operand (a `constant` layer)."""
        value = np.asarray(value, dtype=np.float32)
        if value.ndim == 0:
            value = value.reshape(1)
        return self.helper(hint, "constant", {"shape": list(value.shape)}, [], {"value": value})


# ---------------------------------------------------------------- helpers shared by the op mappings
def per_sample_constant(b: Builder, value: np.ndarray, full_rank: int, what: str) -> np.ndarray:
    """A constant broadcast against activations of ONNX rank `full_rank` -> the same constant per sample.

    Its axes at and before the batch axis must be 1 (a constant cannot vary across the batch).
    """
    value = np.asarray(value)
    lead = value.ndim - full_rank + 1  # axes aligned with the batch axis or before it
    if lead > 0:
        if any(d != 1 for d in value.shape[:lead]):
            raise b.fail(f"{what} has shape {list(value.shape)}, which varies along the batch axis of a "
                         f"rank-{full_rank} activation; convc needs constants that are equal for every sample")
        value = value.reshape(value.shape[lead:])
    return value


def operand(b: Builder, v: Value, full_rank: int, hint: str) -> Act:
    if isinstance(v, Act):
        return v
    return b.constant(per_sample_constant(b, v, full_rank, f"constant operand '{hint}'"), hint)


def axis_per_sample(b: Builder, axis: int, full_rank: int, what: str = "axis") -> int:
    a = axis + full_rank if axis < 0 else axis
    if not 0 <= a < full_rank:
        raise b.fail(f"{what} {axis} is out of range for a rank-{full_rank} tensor")
    if a == 0:
        raise b.fail(f"{what} {axis} is the batch axis; convc computes each sample independently")
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
    x2 = b.helper(f"{name}_2d", "reshape", {"shape": [x.shape[0], 1, x.shape[1]]}, [x])
    return x2, lifted


def unlift_1d(b: Builder, y: Act, name: str) -> Act:
    return b.add(name, "reshape", {"shape": [y.shape[0], y.shape[2]]}, [y])


def spatial_2d(b: Builder, x: Act) -> None:
    if len(x.shape) != 3:
        raise b.fail(f"convc supports 1-D and 2-D windows (N×C×L, N×C×H×W); this input is "
                     f"N×{'×'.join(map(str, x.shape))}")


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
        for size, k, s, d in zip(x.shape[1:], kernel, strides, dilations):
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


# ---------------------------------------------------------------- op mappings
Handler = Callable[[Builder, Any, list, dict, str], list]
HANDLERS: dict[str, Handler] = {}


def handles(*op_types: str):
    def deco(fn):
        for t in op_types:
            HANDLERS[t] = fn
        return fn
    return deco


@handles("Conv")
def _conv(b, node, ins, attrs, name):
    x = first_act(b, ins)
    w = const_input(b, ins[1], "the weight W")
    if len(x.shape) == 2 and w.ndim == 3:
        x2, lifted = lift_1d(b, x, attrs, name)
        y = _conv(b, node, [x2, w[:, :, None, :], *ins[2:]], lifted, b.helper_name(f"{name}_conv"))[0]
        return [unlift_1d(b, y, name)]
    spatial_2d(b, x)
    bias = const_input(b, ins[2] if len(ins) > 2 else None, "the bias B")
    if w.ndim != 4:
        raise b.fail(f"weight W has shape {list(w.shape)}; convc supports 2-D convolutions (4-D weights)")
    kernel = [int(k) for k in attrs.get("kernel_shape", w.shape[2:])]
    strides, dilations = pair(b, attrs, "strides", 1), pair(b, attrs, "dilations", 1)
    group = int(attrs.get("group", 1))
    pads = window_padding(b, attrs, x, kernel, strides, dilations)
    weights = {"weight": w}
    if bias is not None:
        weights["bias"] = bias.reshape(-1)
    return [b.add(name, "conv2d", {"filters": int(w.shape[0]), "kernel": kernel, "stride": strides,
                                   "padding": pads, "dilation": dilations, "groups": group,
                                   "bias": bias is not None}, [x], weights)]


def _pool(b, node, ins, attrs, name, op):
    if len(node.output) > 1 and node.output[1] in b.used:
        raise b.fail("the Indices output of MaxPool is not supported")
    x = first_act(b, ins)
    if len(x.shape) == 2:
        x2, lifted = lift_1d(b, x, attrs, name)
        y = _pool(b, node, [x2], lifted, b.helper_name(f"{name}_pool"), op)[0]
        return [unlift_1d(b, y, name)]
    spatial_2d(b, x)
    kernel = pair(b, attrs, "kernel_shape", 1) if "kernel_shape" in attrs else None
    if kernel is None:
        raise b.fail("missing attribute 'kernel_shape'")
    strides, dilations = pair(b, attrs, "strides", 1), pair(b, attrs, "dilations", 1)
    pads = window_padding(b, attrs, x, kernel, strides, dilations)
    out = {"kernel": kernel, "stride": strides, "padding": pads, "ceil_mode": bool(attrs.get("ceil_mode", 0))}
    if op == "maxpool2d":
        out["dilation"] = dilations
    else:
        if dilations != [1, 1]:
            raise b.fail(f"AveragePool with dilations {dilations} is not supported")
        out["count_include_pad"] = bool(attrs.get("count_include_pad", 0))
    return [b.add(name, op, out, [x])]


@handles("MaxPool")
def _maxpool(b, node, ins, attrs, name):
    return _pool(b, node, ins, attrs, name, "maxpool2d")


@handles("AveragePool")
def _avgpool(b, node, ins, attrs, name):
    return _pool(b, node, ins, attrs, name, "avgpool2d")


@handles("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(b, node, ins, attrs, name):
    x = first_act(b, ins)
    spatial_2d(b, x)
    return [b.add(name, "global_avgpool" if node.op_type == "GlobalAveragePool" else "global_maxpool", {}, [x])]


@handles("ReduceMean", "ReduceMax")
def _reduce_spatial(b, node, ins, attrs, name):
    """Only the global-pooling case: a mean or max over the last two axes of N×C×H×W."""
    x = first_act(b, ins)
    axes = ints(const_input(b, ins[1], "input axes")) if len(ins) > 1 and ins[1] is not None else attrs.get("axes")
    full = len(x.shape) + 1
    axes = sorted(a + full if a < 0 else a for a in axes) if axes is not None else None
    if len(x.shape) != 3 or axes != [2, 3]:
        raise b.fail(f"convc maps {node.op_type} only over axes [2, 3] of N×C×H×W (global pooling); got axes "
                     f"{attrs.get('axes', axes)} on N×{'×'.join(map(str, x.shape))}")
    op = "global_avgpool" if node.op_type == "ReduceMean" else "global_maxpool"
    if int(attrs.get("keepdims", 1)):
        return [b.add(name, op, {}, [x])]
    pooled = b.helper(f"{name}_pool", op, {}, [x])
    return [b.add(name, "flatten", {}, [pooled])]


def _as_vector(x: Act) -> bool:
    return len(x.shape) == 1


@handles("Gemm")
def _gemm(b, node, ins, attrs, name):
    a = ins[0]
    if not isinstance(a, Act):
        raise b.fail("input A must come from the model input (a constant A with a run-time B is not supported)")
    if int(attrs.get("transA", 0)):
        raise b.fail("transA = 1 puts the batch on A's second axis; not supported")
    if not _as_vector(a):
        raise b.fail(f"input A must be N×K, got N×{'×'.join(map(str, a.shape))}")
    w = const_input(b, ins[1], "input B").astype(np.float64)
    if w.ndim != 2:
        raise b.fail(f"input B must be 2-D, got shape {list(w.shape)}")
    weight = (w if int(attrs.get("transB", 0)) else w.T) * float(attrs.get("alpha", 1.0))
    units, k = weight.shape
    if k != a.shape[0]:
        raise b.fail(f"A has {a.shape[0]} features but B expects {k}")
    weights = {"weight": weight}
    c = const_input(b, ins[2] if len(ins) > 2 else None, "input C")
    if c is not None and float(attrs.get("beta", 1.0)) != 0.0:
        c = per_sample_constant(b, c, 2, "input C")
        try:
            weights["bias"] = np.broadcast_to(c.astype(np.float64), (units,)) * float(attrs.get("beta", 1.0))
        except ValueError:
            raise b.fail(f"input C of shape {list(c.shape)} does not broadcast to {units} units") from None
    return [b.add(name, "dense", {"units": int(units), "bias": "bias" in weights}, [a], weights)]


@handles("MatMul")
def _matmul(b, node, ins, attrs, name):
    a, w = ins[0], ins[1]
    if not isinstance(a, Act) or isinstance(w, Act):
        raise b.fail("convc supports MatMul of a run-time N×K input by a constant K×M matrix only")
    if w.ndim != 2:
        raise b.fail(f"the constant operand must be 2-D, got shape {list(w.shape)}")
    if not _as_vector(a):
        raise b.fail(f"the run-time operand must be N×K, got N×{'×'.join(map(str, a.shape))}; batched "
                     "matrix products are not supported")
    if w.shape[0] != a.shape[0]:
        raise b.fail(f"the input has {a.shape[0]} features but the matrix is {w.shape[0]}×{w.shape[1]}")
    return [b.add(name, "dense", {"units": int(w.shape[1]), "bias": False}, [a], {"weight": w.T})]


@handles("BatchNormalization")
def _batchnorm(b, node, ins, attrs, name):
    if any(o in b.used for o in node.output[1:]) or int(attrs.get("training_mode", 0)):
        raise b.fail("training-mode BatchNormalization (extra outputs) is not supported; export in eval mode")
    x = first_act(b, ins)
    scale, bias, mean, var = (const_input(b, v, w).reshape(-1) for v, w in
                              zip(ins[1:5], ("scale", "B", "input_mean", "input_var")))
    if any(p.size != x.shape[0] for p in (scale, bias, mean, var)):
        raise b.fail(f"scale, B, mean and var must have one value per channel ({x.shape[0]}); got sizes "
                     f"{[p.size for p in (scale, bias, mean, var)]} (non-spatial batchnorm is not supported)")
    eps = float(attrs.get("epsilon", 1e-5))
    if var.dtype.kind not in "fiu" or not np.all(var.astype(np.float64) + eps > 0):
        # the square root of a negative variance: NaN, which kernels and the interpreter propagate differently
        raise b.fail("input_var + epsilon must be positive for every channel (a variance cannot be negative)")
    return [b.add(name, "batchnorm", {"eps": eps}, [x],
                  {"weight": scale, "bias": bias, "running_mean": mean, "running_var": var})]


@handles("Relu", "Sigmoid", "Tanh")
def _pointwise(b, node, ins, attrs, name):
    return [b.add(name, node.op_type.lower(), {}, [first_act(b, ins)])]


@handles("LeakyRelu")
def _leaky_relu(b, node, ins, attrs, name):
    return [b.add(name, "leaky_relu", {"negative_slope": float(attrs.get("alpha", 0.01))}, [first_act(b, ins)])]


@handles("Clip")
def _clip(b, node, ins, attrs, name):
    x = first_act(b, ins)
    if len(ins) > 1:  # opset ≥ 11: optional inputs
        lo = const_input(b, ins[1], "input min")
        hi = const_input(b, ins[2] if len(ins) > 2 else None, "input max")
    else:
        lo, hi = attrs.get("min"), attrs.get("max")
    lo = None if lo is None or float(np.asarray(lo)) == -np.inf else float(np.asarray(lo))
    hi = None if hi is None or float(np.asarray(hi)) == np.inf else float(np.asarray(hi))
    if lo is not None and hi is not None and lo > hi:  # ONNX: all outputs become max
        return [b.add(name, "clip", {"min": hi, "max": hi}, [x])]
    return [b.add(name, "clip", {"min": lo, "max": hi}, [x])]


@handles("PRelu")
def _prelu(b, node, ins, attrs, name):
    x = first_act(b, ins)
    slope = per_sample_constant(b, const_input(b, ins[1], "the slope"), len(x.shape) + 1, "the slope")
    if b.upgraded_from is not None and slope.ndim == 1 and slope.size == x.shape[0]:
        slope = slope.reshape((-1,) + (1,) * (len(x.shape) - 1))  # opset < 7: one slope per channel
    padded = slope.reshape((1,) * (len(x.shape) - slope.ndim) + slope.shape)
    if slope.size == 1:
        return [b.add(name, "prelu", {"num_parameters": 1}, [x], {"weight": slope.reshape(1)})]
    if padded.shape[0] == x.shape[0] and all(d == 1 for d in padded.shape[1:]):
        return [b.add(name, "prelu", {"num_parameters": int(x.shape[0])}, [x], {"weight": slope.reshape(-1)})]
    # A slope that is not per channel: max(x, 0) + slope·min(x, 0).
    pos = b.helper(f"{name}_pos", "relu", {}, [x])
    neg = b.helper(f"{name}_neg", "min", {}, [x, b.constant(np.zeros(1), f"{name}_zero")])
    scaled = b.helper(f"{name}_scaled", "mul", {}, [neg, b.constant(slope, f"{name}_slope")])
    return [b.add(name, "add", {}, [pos, scaled])]


def _softmax_axis(b, x: Act, axis: int) -> int:
    return axis_per_sample(b, axis, len(x.shape) + 1)


@handles("Softmax")
def _softmax(b, node, ins, attrs, name):
    x = first_act(b, ins)
    if b.opset >= 13:
        axis = _softmax_axis(b, x, int(attrs.get("axis", -1)))
        return [b.add(name, "softmax", {"axis": axis} if axis else {}, [x])]
    # opset < 13: softmax over the flattening of axes [axis, end).
    axis = _softmax_axis(b, x, int(attrs.get("axis", 1)))
    if axis == len(x.shape) - 1:
        return [b.add(name, "softmax", {"axis": axis} if axis else {}, [x])]
    outer, inner = x.shape[:axis], int(np.prod(x.shape[axis:]))
    flat_shape = (*outer, inner)
    flat = b.helper(f"{name}_flat", "reshape", {"shape": list(flat_shape)}, [x])
    soft = b.helper(f"{name}_2d", "softmax", {"axis": len(outer)} if outer else {}, [flat])
    return [b.add(name, "reshape", {"shape": list(x.shape)}, [soft])]


@handles("Flatten")
def _flatten(b, node, ins, attrs, name):
    x = first_act(b, ins)
    full = len(x.shape) + 1
    axis = int(attrs.get("axis", 1))
    axis = axis + full if axis < 0 else axis
    if axis == 0 or int(np.prod(x.shape[:axis - 1])) != 1:
        raise b.fail(f"Flatten at axis {attrs.get('axis', 1)} of N×{'×'.join(map(str, x.shape))} mixes the batch "
                     "into the first output axis; only axis 1 (or axes after size-1 axes) is supported")
    if len(x.shape) == 1:
        return [x]
    return [b.add(name, "flatten", {}, [x])]


def _reshape_target(b, x: Act, shape: list[int], allowzero: bool, batch: int | None) -> list[int]:
    full_in = [None, *x.shape]
    out = []
    for i, d in enumerate(shape):
        if d == 0 and not allowzero:
            if i >= len(full_in):
                raise b.fail(f"shape {shape}: 0 at axis {i} copies an axis the input does not have")
            out.append(full_in[i])
        else:
            out.append(d)
    if not out:
        raise b.fail("cannot reshape to a scalar: the batch axis must stay")
    head = out[0]
    size = int(np.prod(x.shape))
    if head is None or head == -1 or (batch is not None and head == batch):
        rest = out[1:]
        if head == -1 and -1 in rest:
            raise b.fail(f"shape {shape} has two -1 entries")
        if any(d is not None and d < -1 for d in rest) or any(d == 0 for d in rest):
            raise b.fail(f"shape {shape} has an invalid entry")
        known = int(np.prod([d for d in rest if d != -1]))
        if -1 not in rest and known != size:
            raise b.fail(f"cannot reshape N×{'×'.join(map(str, x.shape))} to {shape}: the batch axis would change")
        if -1 in rest and (known == 0 or size % known):
            raise b.fail(f"cannot reshape N×{'×'.join(map(str, x.shape))} to {shape}")
        return [size // known if d == -1 else d for d in rest]
    raise b.fail(f"cannot reshape N×{'×'.join(map(str, x.shape))} to {shape}: its first axis must stay the batch "
                 "(0, -1 or the batch size)")


@handles("Reshape")
def _reshape(b, node, ins, attrs, name):
    x = first_act(b, ins)
    shape = ints(const_input(b, ins[1], "input shape")) if len(ins) > 1 else list(attrs.get("shape", []))
    target = _reshape_target(b, x, shape, bool(attrs.get("allowzero", 0)), b.batch)
    if tuple(target) == x.shape:
        return [x]
    if len(target) == 1 and len(x.shape) == 3:
        return [b.add(name, "flatten", {}, [x])]
    return [b.add(name, "reshape", {"shape": target}, [x])]


def _axes_of(b, node, ins, attrs) -> list[int] | None:
    if len(ins) > 1 and ins[1] is not None:  # opset ≥ 13
        return ints(const_input(b, ins[1], "input axes"))
    return [int(a) for a in attrs["axes"]] if "axes" in attrs else None


@handles("Unsqueeze", "Squeeze")
def _squeeze(b, node, ins, attrs, name):
    """Adding or removing size-1 axes is a reshape of the per-sample shape (never of the batch axis)."""
    x = first_act(b, ins)
    axes = _axes_of(b, node, ins, attrs)
    shape = list(x.shape)
    if node.op_type == "Unsqueeze":
        if axes is None:
            raise b.fail("missing the axes to insert")
        rank = len(shape) + 1 + len(axes)
        for a in sorted(axis_per_sample(b, a, rank, "axis") for a in axes):
            shape.insert(a, 1)
    else:
        full = len(shape) + 1
        if axes is None:
            drop = {i for i, d in enumerate(shape) if d == 1}
        else:
            drop = {axis_per_sample(b, a, full, "axis") for a in axes}
            if any(shape[i] != 1 for i in drop):
                raise b.fail(f"cannot squeeze axes {axes} of N×{'×'.join(map(str, x.shape))}: not all of size 1")
        shape = [d for i, d in enumerate(shape) if i not in drop]
    if not shape:
        raise b.fail("the result would have no per-sample axes")
    if tuple(shape) == x.shape:
        return [x]
    return [b.add(name, "reshape", {"shape": shape}, [x])]


@handles("Transpose")
def _transpose(b, node, ins, attrs, name):
    x = first_act(b, ins)
    full = len(x.shape) + 1
    perm = [int(p) for p in attrs.get("perm", list(range(full))[::-1])]
    if sorted(perm) != list(range(full)) or perm[0] != 0:
        raise b.fail(f"perm {perm} moves the batch axis; only permutations keeping axis 0 first are supported")
    per_sample = [p - 1 for p in perm[1:]]
    if per_sample == list(range(len(per_sample))):
        return [x]
    return [b.add(name, "transpose", {"perm": per_sample}, [x])]


def _elementwise(b, node, ins, name, op):
    acts = [v for v in ins if isinstance(v, Act)]
    ranks = {len(a.shape) for a in acts}
    full = max(ranks) + 1
    consts = [v for v in ins if not isinstance(v, Act)]
    if len(ranks) > 1:
        raise b.fail("run-time operands of different ranks broadcast the batch axis against another axis; "
                     "not supported")
    for c in consts:
        if np.asarray(c).ndim > full:
            raise b.fail(f"a constant operand of shape {list(np.shape(c))} has more axes than the run-time "
                         f"operand (rank {full}); the batch axis would move")
    operands = [operand(b, v, full, f"{name}_operand{i}") for i, v in enumerate(ins)]
    return b.add(name, op, {}, operands)


@handles("Add", "Sub", "Mul", "Div", "Max", "Min", "Sum")
def _binary(b, node, ins, attrs, name):
    op = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Max": "max", "Min": "min", "Sum": "add"}[
        node.op_type]
    if len(ins) == 1:
        return [ins[0]]
    if op in ("add", "mul") and len(ins) > 2:
        consts = [v for v in ins if not isinstance(v, Act)]
        if len(consts) > 1:  # fold the constants together first
            folded = consts[0]
            for c in consts[1:]:
                folded = folded + c if op == "add" else folded * c
            ins = [v for v in ins if isinstance(v, Act)] + [folded]
    if len(ins) > 2 and op not in ("add", "mul"):
        acc = _elementwise(b, node, ins[:2], b.helper_name(f"{name}_0"), op)
        for i, v in enumerate(ins[2:], 1):
            acc = _elementwise(b, node, [acc, v], name if i == len(ins) - 2 else b.helper_name(f"{name}_{i}"), op)
        return [acc]
    return [_elementwise(b, node, ins, name, op)]


@handles("Concat")
def _concat(b, node, ins, attrs, name):
    acts = [v for v in ins if isinstance(v, Act)]
    full = len(acts[0].shape) + 1
    axis = axis_per_sample(b, int(attrs["axis"]) if "axis" in attrs else 1, full)
    operands = [operand(b, v, full, f"{name}_operand{i}") for i, v in enumerate(ins)]
    if len(operands) == 1:
        return [operands[0]]
    return [b.add(name, "concat", {"axis": axis} if axis else {}, operands)]


@handles("Dropout")
def _dropout(b, node, ins, attrs, name):
    if len(node.output) > 1 and node.output[1] in b.used:
        raise b.fail("the mask output of Dropout is not supported")
    if len(ins) > 2 and ins[2] is not None and bool(np.asarray(const_input(b, ins[2], "training_mode"))):
        raise b.fail("Dropout in training mode is not supported")
    return [first_act(b, ins)]  # identity at inference


@handles("Identity")
def _identity(b, node, ins, attrs, name):
    return [first_act(b, ins)]


@handles("Pad")
def _pad(b, node, ins, attrs, name):
    x = first_act(b, ins)
    full = len(x.shape) + 1
    mode = attrs.get("mode", "constant")
    if mode != "constant":
        raise b.fail(f"mode {mode!r} is not supported; only 'constant'")
    if len(ins) > 1:
        pads = ints(const_input(b, ins[1], "input pads"))
        value = const_input(b, ins[2] if len(ins) > 2 else None, "input constant_value")
        value = 0.0 if value is None else float(np.asarray(value).reshape(-1)[0])
        axes = ints(const_input(b, ins[3] if len(ins) > 3 else None, "input axes"))
    else:
        pads = [int(p) for p in attrs.get("pads", attrs.get("paddings", []))]
        value = float(attrs.get("value", 0.0))
        axes = None
    if axes is not None:
        axes = [a + full if a < 0 else a for a in axes]
        full_pads = [0] * (2 * full)
        for i, a in enumerate(axes):
            full_pads[a], full_pads[a + full] = pads[i], pads[i + len(axes)]
        pads = full_pads
    if len(pads) != 2 * full:
        raise b.fail(f"pads {pads} must have {2 * full} values for a rank-{full} input")
    if pads[0] or pads[full]:
        raise b.fail(f"pads {pads} pad the batch axis; not supported")
    begins, ends = pads[1:full], pads[full + 1:]
    if not any(begins) and not any(ends):
        return [x]
    return [b.add(name, "pad", {"pads": begins + ends, "value": value}, [x])]


@handles("LRN")
def _lrn(b, node, ins, attrs, name):
    x = first_act(b, ins)
    return [b.add(name, "lrn", {"size": int(attrs["size"]), "alpha": float(attrs.get("alpha", 1e-4)),
                                "beta": float(attrs.get("beta", 0.75)), "bias": float(attrs.get("bias", 1.0))},
                  [x])]


# ---------------------------------------------------------------- checks against the op's schema
# INT attributes that the ONNX operators define as 0 or 1.
FLAG_ATTRIBUTES = {"ceil_mode", "count_include_pad", "transA", "transB", "keepdims", "allowzero",
                   "select_last_index", "noop_with_empty_axes"}


def check_node(b: Builder, node, opset: int) -> None:
    """Attribute types, required attributes and inputs as the op's ONNX schema states them, so no mapping
    meets an attribute of the wrong type or a missing input (a file may lie about any of them)."""
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, "")
    except onnx.defs.SchemaError:
        raise b.fail(f"ONNX has no op {node.op_type} at opset {opset}") from None
    seen = set()
    for a in node.attribute:
        if a.name in seen:
            raise b.fail(f"attribute '{a.name}' is given twice")
        seen.add(a.name)
        spec = schema.attributes.get(a.name)
        if spec is None:
            raise b.fail(f"{node.op_type} (opset {schema.since_version}) has no attribute '{a.name}'")
        if a.type != spec.type.value:
            raise b.fail(f"attribute '{a.name}' is {onnx.AttributeProto.AttributeType.Name(a.type)}; "
                         f"{node.op_type} takes {spec.type.name}")
        if a.name in FLAG_ATTRIBUTES and a.i not in (0, 1):  # runtimes differ on what 2 means
            raise b.fail(f"attribute '{a.name}' is {a.i}; it is a flag, 0 or 1")
    missing = [name for name, spec in schema.attributes.items() if spec.required and name not in seen]
    if missing:
        raise b.fail(f"missing required attribute '{missing[0]}'")
    if not schema.min_input <= len(node.input) <= schema.max_input:
        raise b.fail(f"{len(node.input)} inputs; {node.op_type} takes {schema.min_input} to {schema.max_input}")
    for i, (name, formal) in enumerate(zip(node.input, schema.inputs)):
        if not name and formal.option != onnx.defs.OpSchema.FormalParameterOption.Optional:
            raise b.fail(f"input {i} ({formal.name}) is required but not given")


def check_unique_names(model, source: str) -> None:
    """Every tensor has one definition: one initializer or graph input or node output."""
    g = model.graph
    defined: dict[str, str] = {}
    for init in g.initializer:
        if init.name in defined:
            raise ModelError(f"{source}: initializer '{init.name}' is defined twice")
        defined[init.name] = "an initializer"
    for node in g.node:
        for o in node.output:
            if o and o in defined and defined[o] != "a graph input":
                raise ModelError(f"{source}: node '{node.name or node.output[0]}' ({node.op_type}) writes "
                                 f"'{o}', which {defined[o]} already defines")
            if o and o in {i.name for i in g.input}:
                raise ModelError(f"{source}: node '{node.name or node.output[0]}' ({node.op_type}) writes "
                                 f"'{o}', which is a graph input")
            if o:
                defined[o] = f"node '{node.name or o}'"


# ---------------------------------------------------------------- constant folding
def _attr_dict(node) -> dict[str, Any]:
    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [x.decode("utf-8", "replace") for x in v]
        out[a.name] = v
    return out


def fold(b: Builder, node, ins: list, opset_imports, batch_value: int) -> list[np.ndarray]:
    """Evaluate a node whose inputs are all known at compile time."""
    t = node.op_type
    if t == "Shape":  # of a run-time tensor too: its per-sample shape is static
        x = ins[0]
        shape = [batch_value, *x.shape] if isinstance(x, Act) else list(np.shape(x))
        attrs = _attr_dict(node)
        start, end = attrs.get("start", 0), attrs.get("end", len(shape))
        return [np.array(shape[start:end] if "end" in attrs else shape[start:], dtype=np.int64)]
    if t == "Size" and isinstance(ins[0], Act):
        return [np.array(batch_value * int(np.prod(ins[0].shape)), dtype=np.int64)]
    if t == "ConstantOfShape":  # fast path: exporters build whole weight tensors this way
        try:
            fill = _attr_dict(node).get("value")
            fill = np.zeros(1, np.float32) if fill is None else numpy_helper.to_array(fill).reshape(-1)[:1]
            shape = [int(d) for d in np.asarray(ins[0]).reshape(-1)]
        except Exception as e:  # a value tensor or shape that lies about its data
            raise b.fail(f"cannot read its value or shape: {type(e).__name__}: {e}") from None
        if fill.size != 1 or any(d < 0 for d in shape) or math.prod(shape) > b.limits.max_weights:
            raise b.fail(f"shape {shape} with {fill.size} fill value(s): needs one value and a shape of at most "
                         f"{b.limits.max_weights} elements (compiler.Limits.max_weights)")
        return [np.full(shape, fill[0], dtype=fill.dtype)]
    from onnx.reference import ReferenceEvaluator
    feeds = {name: v for name, v in zip(node.input, ins) if name}
    graph = onnx.helper.make_graph(
        [node], "fold",
        [onnx.helper.make_tensor_value_info(n, onnx.helper.np_dtype_to_tensor_dtype(np.asarray(v).dtype),
                                            np.shape(v)) for n, v in feeds.items()],
        [onnx.helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in node.output if o])
    model = onnx.helper.make_model(graph, opset_imports=list(opset_imports))
    try:
        outs = ReferenceEvaluator(model).run(None, {n: np.asarray(v) for n, v in feeds.items()})
    except Exception as e:
        raise b.fail(f"cannot evaluate this constant subgraph at compile time: {type(e).__name__}: {e}") from None
    return [np.asarray(o) for o in outs]


# ---------------------------------------------------------------- the whole model
def _foldable(node, inputs_known: list[bool]) -> bool:
    """Computable at compile time: constant inputs, or the shape/size of a run-time tensor (static per sample)."""
    if node.domain not in ("", "ai.onnx") or node.op_type in NONDETERMINISTIC:
        return False
    if node.op_type in ("Shape", "Size"):
        return True
    return all(inputs_known) and (bool(node.input) or node.op_type == "Constant")


def _dims(value_info) -> list:
    t = value_info.type
    if not t.HasField("tensor_type"):
        return None
    if not t.tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.tensor_type.shape.dim]


def _type_name(elem: int) -> str:
    try:
        return onnx.TensorProto.DataType.Name(elem)
    except ValueError:
        return f"element type {elem} (not an ONNX type)"


def _per_sample_shape(inp, source: str) -> list[int]:
    """A run-time input's shape without its leading batch axis; float32 and static sizes only."""
    elem = inp.type.tensor_type.elem_type
    if elem != onnx.TensorProto.FLOAT:
        raise ModelError(f"{source}: input '{inp.name}' has element type {_type_name(elem)}; convc computes in float32")
    dims = _dims(inp)
    if dims is None:
        raise ModelError(f"{source}: input '{inp.name}' has no shape; convc needs its static per-sample shape")
    if len(dims) < 2:
        raise ModelError(f"{source}: input '{inp.name}' has shape {dims}; its first axis must be the batch, "
                         "followed by the per-sample axes")
    if not all(isinstance(d, int) and d >= 1 for d in dims[1:]):
        raise ModelError(f"{source}: input '{inp.name}' has shape {dims}; every axis after the batch must have a "
                         "fixed positive size")
    return [int(d) for d in dims[1:]]


def graph_from_model(model, source: str = "<onnx>", bind: dict[str, np.ndarray] | None = None,
                     _upgraded_from: int | None = None, limits: Limits = DEFAULT_LIMITS) -> Graph:
    """An onnx.ModelProto -> Graph without shapes (the pipeline infers and validates them).

    bind: values for graph inputs to treat as constants; the other inputs without initializers are run-time
    inputs, each with the batch as its first axis.
    """
    g = model.graph
    opset = 1
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            opset = imp.version
    if opset < 1:
        raise ModelError(f"{source}: the default-domain opset import is {opset}; ONNX opsets start at 1")
    if opset > LATEST_OPSET:
        raise ModelError(f"{source}: the model imports opset {opset}, newer than the {LATEST_OPSET} that the "
                         "installed onnx package defines (pip install -U onnx)")
    if opset < 7:  # before numpy-style broadcasting: let onnx's version converter rewrite it
        try:
            model = onnx.version_converter.convert_version(model, 7)
        except Exception as e:
            raise ModelError(f"{source}: opset {opset} is older than 7 and onnx's version converter cannot "
                             f"upgrade it: {type(e).__name__}: {e}") from None
        return graph_from_model(model, source, bind, _upgraded_from=opset, limits=limits)

    check_unique_names(model, source)
    values: dict[str, Value] = {}
    for init in g.initializer:
        if any(d < 0 for d in init.dims):
            raise ModelError(f"{source}: initializer '{init.name}' has negative dims {list(init.dims)}")
        try:
            values[init.name] = numpy_helper.to_array(init)
        except Exception as e:
            raise ModelError(f"{source}: initializer '{init.name}' cannot be read: {type(e).__name__}: {e}") from None
    for name, v in (bind or {}).items():
        values[name] = np.asarray(v)
    runtime_inputs = [i for i in g.input if i.name not in values]
    if not runtime_inputs:
        raise ModelError(f"{source}: the model has no run-time input (every graph input has an initializer)")
    per_sample_shapes = [_per_sample_shape(i, source) for i in runtime_inputs]
    first_dim = _dims(runtime_inputs[0])[0]
    batch = first_dim if isinstance(first_dim, int) and first_dim >= 1 else None

    # Which tensors are known at compile time, and which nodes have no mapping.
    known = set(values)
    unsupported: dict[str, list[str]] = {}
    for node in g.node:
        domain = node.domain if node.domain not in ("", "ai.onnx") else ""
        if _foldable(node, [(not i) or i in known for i in node.input]):
            known.update(o for o in node.output if o)
        elif domain or node.op_type not in HANDLERS:
            key = f"{domain}.{node.op_type}" if domain else node.op_type
            unsupported.setdefault(key, []).append(node.name or node.output[0] if node.output else "?")
    if unsupported:
        listing = "; ".join(f"{t} (node{'s' if len(n) > 1 else ''} {', '.join(map(repr, n[:8]))}"
                            f"{' ...' if len(n) > 8 else ''})" for t, n in sorted(unsupported.items()))
        raise ModelError(f"{source}: unsupported ONNX op type(s): {listing}")

    reserved = {i.name for i in g.input} | {o for n in g.node for o in n.output} | {o.name for o in g.output}
    b = Builder(source, reserved, limits)
    b.opset = opset
    b.upgraded_from = _upgraded_from
    b.used = {i for n in g.node for i in n.input if i} | {o.name for o in g.output}
    b.batch = batch if batch is not None else 1
    for inp, shape in zip(runtime_inputs, per_sample_shapes):
        values[inp.name] = b.add(inp.name, "input", {"shape": shape}, [])
    input_names = {i.name for i in runtime_inputs}

    for node in g.node:
        b.node = node
        if node.domain in ("", "ai.onnx"):
            check_node(b, node, opset)
        ins = []
        for i in node.input:
            if not i:
                ins.append(None)
            elif i not in values:
                raise b.fail(f"input '{i}' is not produced by any earlier node (nodes must be topologically sorted)")
            else:
                ins.append(values[i])
        if _foldable(node, [not isinstance(v, Act) for v in ins]):
            outs = fold(b, node, ins, model.opset_import, b.batch)
        else:
            name = node.output[0] if node.output and node.output[0] else b.helper_name(node.name or node.op_type)
            outs = HANDLERS[node.op_type](b, node, ins, _attr_dict(node), name)
        for o, v in zip(node.output, outs):
            if o:
                values[o] = v
    b.node = None

    outputs = []
    for out in g.output:
        elem = out.type.tensor_type.elem_type if out.type.HasField("tensor_type") else onnx.TensorProto.FLOAT
        if elem not in (onnx.TensorProto.FLOAT, onnx.TensorProto.UNDEFINED):
            raise ModelError(f"{source}: output '{out.name}' is declared {_type_name(elem)}; convc computes "
                             "float32 outputs")
        v = values.get(out.name)
        if not out.name:
            raise ModelError(f"{source}: graph output {len(outputs)} has no name")
        if v is None:
            raise ModelError(f"{source}: output '{out.name}' is not produced by any node")
        if not isinstance(v, Act):
            raise ModelError(f"{source}: output '{out.name}' is a constant; convc models compute their outputs "
                             "from the input")
        if v.layer != out.name or v.layer in outputs or v.layer in input_names:
            v = b.add(out.name if out.name not in b.shapes else b.helper_name(out.name), "identity", {}, [v])
        outputs.append(v.layer)
    name = g.name or Path(source).stem
    return Graph.from_layers(name, b.layers, outputs, b.weights, source)


def parse_onnx(path: str | os.PathLike, allow_outside_paths: bool = False,
               limits: Limits = DEFAULT_LIMITS) -> tuple[Graph, None]:
    """A .onnx file -> (Graph, None): the weights come from the file, so there is no seed."""
    path = Path(path)
    model = read_model(path, allow_outside_paths)
    return graph_from_model(model, str(path), limits=limits), None


# ---------------------------------------------------------------- back out: the native description
def to_description(graph: Graph, weights_file: str) -> dict[str, Any]:
    """A Graph -> a native description dict (docs/format.md) naming `weights_file` for its weights."""
    layers = []
    input_name = graph.inputs[0]
    for layer in graph.layers():
        if layer.op == "input":
            continue
        entry = {"name": layer.name, "op": layer.op, "inputs": list(layer.inputs)}
        for k, v in attrs_to_dict(layer.attrs).items():
            entry[k] = v
        layers.append(entry)
    return {"name": graph.name,
            "input": {"name": input_name, "shape": list(graph.layer(input_name).attrs.shape)},
            "layers": layers, "outputs": list(graph.outputs), "weights": weights_file}
