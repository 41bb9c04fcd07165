"""One handler per ONNX op type: turns a node into one or a few native layers through the Builder.

HANDLERS is keyed by ONNX op type. Which types convc imports, and as which native op, the registry says
(each op's `onnx_types`; handlers shared by several types read the op from ONNX_TYPES); a handler says how.
Importing this module checks that the two agree.
Each handler's docstring is its row's note in docs/onnx.md.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import onnx

from ...ops import ONNX_TYPES, REGISTRY
from .builder import (Act, Builder, axis_per_sample, const_input, first_act, ints, lift_1d, operand, pair,
                      per_sample_constant, spatial_2d, unlift_1d, window_padding)

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
    """2-D, and 1-D as 2-D with height 1 (reshape, conv2d, reshape); auto_pad NOTSET / SAME_UPPER /
    SAME_LOWER / VALID, pads, strides, dilations, group, optional bias; weight [K, C/group, kh, kw] as PyTorch."""
    x = first_act(b, ins)
    w = const_input(b, ins[1], "the weight W")
    if len(b.sample(x)) == 2 and w.ndim == 3:
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
    if len(b.sample(x)) == 2:
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
    """1-D or 2-D; kernel_shape, strides (default 1), pads, auto_pad, dilations, ceil_mode; not the Indices
    output."""
    return _pool(b, node, ins, attrs, name, "maxpool2d")


@handles("AveragePool")
def _avgpool(b, node, ins, attrs, name):
    """1-D or 2-D; kernel_shape, strides, pads, auto_pad, ceil_mode, count_include_pad; no dilations."""
    return _pool(b, node, ins, attrs, name, "avgpool2d")


@handles("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(b, node, ins, attrs, name):
    """N×C×H×W."""
    x = first_act(b, ins)
    spatial_2d(b, x)
    return [b.add(name, ONNX_TYPES[node.op_type], {}, [x])]


def _as_vector(b, x: Act) -> bool:
    return len(b.sample(x)) == 1


@handles("Gemm")
def _gemm(b, node, ins, attrs, name):
    """A run-time N×K, B constant; alpha folded into the weight, beta·C into the bias (C scalar, [M] or
    [1, M]); transB. transA, or a C that differs per row (M×N), compile the model for its fixed shapes
    (a transpose, or an add after the dense layer); a C computed by the model is added after it."""
    a = ins[0]
    if not isinstance(a, Act):
        raise b.fail("input A must come from the model input (a constant A with a run-time B is not supported)")
    if int(attrs.get("transA", 0)):
        if b.batched:
            raise b.fail_batch("transA = 1 puts the batch on A's second axis")
        a = b.helper(f"{name}_a", "transpose", {"perm": [1, 0]}, [a])
    if not _as_vector(b, a):
        raise b.fail(f"input A must be N×K, got N×{'×'.join(map(str, b.sample(a)))}")
    w = const_input(b, ins[1], "input B").astype(np.float64)
    if w.ndim != 2:
        raise b.fail(f"input B must be 2-D, got shape {list(w.shape)}")
    weight = (w if int(attrs.get("transB", 0)) else w.T) * float(attrs.get("alpha", 1.0))
    units, k = weight.shape
    if k != b.sample(a)[0]:
        raise b.fail(f"A has {b.sample(a)[0]} features but B expects {k}")
    weights = {"weight": weight}
    beta = float(attrs.get("beta", 1.0))
    if len(ins) > 2 and isinstance(ins[2], Act) and beta != 0.0:  # C computed by the model: added after
        y = b.helper(f"{name}_product", "dense", {"units": int(units), "bias": False}, [a], weights)
        c_act = ins[2] if beta == 1.0 else b.helper(f"{name}_c", "mul", {}, [ins[2], b.constant(np.array([beta]),
                                                                                                   f"{name}_beta")])
        return [b.add(name, "add", {}, [y, c_act])]
    c = const_input(b, ins[2] if len(ins) > 2 else None, "input C")
    full_bias = None
    if c is not None and beta != 0.0:
        c = per_sample_constant(b, c, 2, "input C").astype(np.float64) * beta
        if c.size <= units and c.shape[-1:] in ((units,), (1,), ()):
            weights["bias"] = np.broadcast_to(c.reshape(-1), (units,))
        elif b.batched:
            raise b.fail(f"input C of shape {list(c.shape)} does not broadcast to {units} units")
        else:
            full_bias = c  # M×N (or M×1): added after the product
    y = b.add(name if full_bias is None else b.helper_name(f"{name}_product"), "dense",
              {"units": int(units), "bias": "bias" in weights}, [a], weights)
    if full_bias is None:
        return [y]
    return [b.add(name, "add", {}, [y, b.constant(full_bias, f"{name}_c")])]


@handles("BatchNormalization")
def _batchnorm(b, node, ins, attrs, name):
    """Inference form (scale, B, mean, var, epsilon); not folded into Conv here (that is a pass's job)."""
    if any(o in b.used for o in node.output[1:]) or int(attrs.get("training_mode", 0)):
        raise b.fail("training-mode BatchNormalization (extra outputs) is not supported; export in eval mode")
    x = first_act(b, ins)
    scale, bias, mean, var = (const_input(b, v, w).reshape(-1) for v, w in
                              zip(ins[1:5], ("scale", "B", "input_mean", "input_var")))
    if any(p.size != b.sample(x)[0] for p in (scale, bias, mean, var)):
        raise b.fail(f"scale, B, mean and var must have one value per channel ({b.sample(x)[0]}); got sizes "
                     f"{[p.size for p in (scale, bias, mean, var)]} (non-spatial batchnorm is not supported)")
    eps = float(attrs.get("epsilon", 1e-5))
    if var.dtype.kind not in "fiu" or not np.all(var.astype(np.float64) + eps > 0):
        # the square root of a negative variance: NaN, which kernels and the interpreter propagate differently
        raise b.fail("input_var + epsilon must be positive for every channel (a variance cannot be negative)")
    return [b.add(name, "batchnorm", {"eps": eps}, [x],
                  {"weight": scale, "bias": bias, "running_mean": mean, "running_var": var})]


@handles("Clip")
def _clip(b, node, ins, attrs, name):
    """min/max as attributes (opset < 11) or constant inputs (≥ 11), each optional."""
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
    """One slope, or one per channel; any other slope shape becomes relu + min + mul + add."""
    x = first_act(b, ins)
    sample = b.sample(x)
    slope = per_sample_constant(b, const_input(b, ins[1], "the slope"), b.rank(x), "the slope")
    if b.upgraded_from is not None and slope.ndim == 1 and slope.size == sample[0]:
        slope = slope.reshape((-1,) + (1,) * (len(sample) - 1))  # opset < 7: one slope per channel
    if slope.size == 1:
        return [b.add(name, "prelu", {"num_parameters": 1}, [x], {"weight": slope.reshape(1)})]
    if slope.ndim <= len(sample):  # aligned with the sample's axes: one slope per channel?
        padded = slope.reshape((1,) * (len(sample) - slope.ndim) + slope.shape)
        if padded.shape[0] == sample[0] and all(d == 1 for d in padded.shape[1:]):
            return [b.add(name, "prelu", {"num_parameters": int(sample[0])}, [x], {"weight": slope.reshape(-1)})]
    # A slope that is not per channel: max(x, 0) + slope·min(x, 0).
    pos = b.helper(f"{name}_pos", "relu", {}, [x])
    neg = b.helper(f"{name}_neg", "min", {}, [x, b.constant(np.zeros(1), f"{name}_zero")])
    scaled = b.helper(f"{name}_scaled", "mul", {}, [neg, b.constant(slope, f"{name}_slope")])
    return [b.add(name, "add", {}, [pos, scaled])]


@handles("Softmax")
def _softmax(b, node, ins, attrs, name):
    """Opset ≥ 13: one axis; before 13: the flattening of axes [axis, end) (reshape, softmax, reshape)."""
    x = first_act(b, ins)
    if b.opset >= 13:
        return [b.add(name, "softmax", {"axis": int(attrs.get("axis", -1))}, [x])]
    # opset < 13: softmax over the flattening of axes [axis, end).
    axis = axis_per_sample(b, int(attrs.get("axis", 1)), b.rank(x))
    if axis == len(x.shape) - 1:
        return [b.add(name, "softmax", {"axis": -1}, [x])]
    flat_shape = (*x.shape[:axis], int(np.prod(x.shape[axis:])))
    flat = b.helper(f"{name}_flat", "reshape", {"shape": list(flat_shape)}, [x])
    soft = b.helper(f"{name}_2d", "softmax", {"axis": -1}, [flat])
    return [b.add(name, "reshape", {"shape": list(x.shape)}, [soft])]


@handles("Flatten")
def _flatten(b, node, ins, attrs, name):
    """Axis 1 (or an axis after size-1 axes); any other axis compiles the model for its fixed shapes."""
    x = first_act(b, ins)
    full = b.rank(x)
    axis = int(attrs.get("axis", 1))
    axis = axis + full if axis < 0 else axis
    if not b.batched:  # the whole tensor as (prod of axes before `axis`) × (prod of the rest)
        outer, inner = int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis:]))
        return [x] if x.shape == (outer, inner) else [b.add(name, "reshape", {"shape": [outer, inner]}, [x])]
    if axis == 0 or int(np.prod(x.shape[:axis - 1])) != 1:
        raise b.fail_batch(f"Flatten at axis {attrs.get('axis', 1)} of N×{'×'.join(map(str, x.shape))} mixes the "
                           "batch into the first output axis")
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
        raise b.fail_batch("cannot reshape to a scalar: the batch axis must stay")
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
            raise b.fail_batch(f"cannot reshape N×{'×'.join(map(str, x.shape))} to {shape}: the batch axis would "
                               "change")
        if -1 in rest and (known == 0 or size % known):
            raise b.fail(f"cannot reshape N×{'×'.join(map(str, x.shape))} to {shape}")
        return [size // known if d == -1 else d for d in rest]
    raise b.fail_batch(f"cannot reshape N×{'×'.join(map(str, x.shape))} to {shape}: its first axis must stay the "
                       "batch (0, -1 or the batch size)")


def _whole_reshape_target(b, x: Act, shape: list[int], allowzero: bool) -> list[int]:
    """ONNX Reshape's target for a whole tensor: 0 copies the input's axis (unless allowzero), one -1 is inferred."""
    out = [x.shape[i] if d == 0 and not allowzero and i < len(x.shape) else d for i, d in enumerate(shape)]
    size = int(np.prod(x.shape))
    if out.count(-1) > 1 or any(d < -1 for d in out):
        raise b.fail(f"shape {shape} is not a valid target")
    known = int(np.prod([d for d in out if d != -1]))
    if -1 in out:
        if known == 0 or size % known:
            raise b.fail(f"cannot reshape {'×'.join(map(str, x.shape))} to {shape}")
        out = [size // known if d == -1 else d for d in out]
    if int(np.prod(out)) != size or not out:
        raise b.fail(f"cannot reshape {'×'.join(map(str, x.shape))} ({size} values) to {shape}")
    return [int(d) for d in out]


@handles("Reshape")
def _reshape(b, node, ins, attrs, name):
    """Constant shape; 0 copies, one −1; first entry 0, −1 or the exported batch size; a flatten when the
    result is N×F."""
    x = first_act(b, ins)
    shape = ints(const_input(b, ins[1], "input shape")) if len(ins) > 1 else list(attrs.get("shape", []))
    if not b.batched:  # the whole tensor: ONNX's rule as it is
        target = _whole_reshape_target(b, x, shape, bool(attrs.get("allowzero", 0)))
        return [x] if tuple(target) == x.shape else [b.add(name, "reshape", {"shape": target}, [x])]
    target = _reshape_target(b, x, shape, bool(attrs.get("allowzero", 0)), b.batch)
    if tuple(target) == x.shape:
        return [x]
    if len(target) == 1 and len(x.shape) == 3:
        return [b.add(name, "flatten", {}, [x])]
    return [b.add(name, "reshape", {"shape": target}, [x])]


@handles("Transpose")
def _transpose(b, node, ins, attrs, name):
    """Permutations keeping axis 0 first."""
    x = first_act(b, ins)
    full = b.rank(x)
    perm = [int(p) for p in attrs.get("perm", list(range(full))[::-1])]
    if perm == list(range(full)):
        return [x]
    return [b.add(name, "transpose", {"perm": perm}, [x])]


def _elementwise(b, node, ins, name, op):
    acts = [v for v in ins if isinstance(v, Act)]
    ranks = {b.rank(a) for a in acts}
    full = max(ranks)
    consts = [v for v in ins if not isinstance(v, Act)]
    if b.batched and len(ranks) > 1:
        raise b.fail_batch("run-time operands of different ranks broadcast the batch axis against another axis")
    for c in consts:
        if b.batched and np.asarray(c).ndim > full:
            raise b.fail_batch(f"a constant operand of shape {list(np.shape(c))} has more axes than the run-time "
                               f"operand (rank {full}), so the batch axis would move")
    operands = [operand(b, v, full, f"{name}_operand{i}") for i, v in enumerate(ins)]
    return b.add(name, op, {}, operands)


@handles("Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Pow")
def _binary(b, node, ins, attrs, name):
    """NumPy broadcasting between activations of equal rank and against constants (a `constant` layer);
    constants must be equal for every sample."""
    op = ONNX_TYPES[node.op_type]
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
    """Any axis but the batch; constant operands become `constant` layers."""
    acts = [v for v in ins if isinstance(v, Act)]
    full = b.rank(acts[0])
    operands = [operand(b, v, full, f"{name}_operand{i}") for i, v in enumerate(ins)]
    if len(operands) == 1:
        return [operands[0]]
    return [b.add(name, "concat", {"axis": int(attrs["axis"]) if "axis" in attrs else 1}, operands)]


@handles("Cast", "CastLike")
def _cast(b, node, ins, attrs, name):
    """To float32, the type convc computes in: no layer (exporters and expanded ONNX functions cast float32 to
    float32). A cast to any other type would change the values and is refused."""
    if node.op_type == "Cast":
        to = int(attrs.get("to", 0))
        target = onnx.helper.tensor_dtype_to_np_dtype(to) if to else None
    else:
        like = ins[1] if len(ins) > 1 else None
        target = np.dtype(np.float32) if isinstance(like, Act) else np.asarray(like).dtype if like is not None else None
    if target != np.float32:
        raise b.fail(f"casts to {target}; convc computes in float32 and casts only to it")
    x = ins[0]
    return [x if isinstance(x, Act) else np.asarray(x, np.float32)]


@handles("Dropout")
def _dropout(b, node, ins, attrs, name):
    """No layer: the input is reused (identity at inference); not the mask output, not training mode."""
    if len(node.output) > 1 and node.output[1] in b.used:
        raise b.fail("the mask output of Dropout is not supported")
    if len(ins) > 2 and ins[2] is not None and bool(np.asarray(const_input(b, ins[2], "training_mode"))):
        raise b.fail("Dropout in training mode is not supported")
    return [first_act(b, ins)]  # identity at inference


@handles("Identity")
def _identity(b, node, ins, attrs, name):
    """No layer: the input is reused; an identity layer only when a graph output needs its own name."""
    return [first_act(b, ins)]


@handles("Pad")
def _pad(b, node, ins, attrs, name):
    """Constant mode; pads as attribute (< 11) or input, constant_value, axes (≥ 18); never the batch axis."""
    x = first_act(b, ins)
    full = b.rank(x)
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
    skip = 1 if b.batched else 0  # the pad op's axes are the graph's: without the batch when batched
    if skip and (pads[0] or pads[full]):
        raise b.fail_batch(f"pads {pads} pad the batch axis")
    begins, ends = pads[skip:full], pads[full + skip:]
    if not any(begins) and not any(ends):
        return [x]
    return [b.add(name, "pad", {"pads": begins + ends, "value": value}, [x])]


@handles("LRN")
def _lrn(b, node, ins, attrs, name):
    """size, alpha, beta, bias; the ONNX window (it differs from torch's for even sizes)."""
    x = first_act(b, ins)
    return [b.add(name, "lrn", {"size": int(attrs["size"]), "alpha": float(attrs.get("alpha", 1e-4)),
                                "beta": float(attrs.get("beta", 0.75)), "bias": float(attrs.get("bias", 1.0))},
                  [x])]


@handles("Selu")
def _selu(b, node, ins, attrs, name):
    """With ONNX's default alpha and gamma (torch's constants) `selu`; other values become elu(alpha) · gamma."""
    from ...ops.activations import SELU_ALPHA, SELU_SCALE
    x = first_act(b, ins)
    alpha, gamma = float(attrs.get("alpha", SELU_ALPHA)), float(attrs.get("gamma", SELU_SCALE))
    if np.float32(alpha) == np.float32(SELU_ALPHA) and np.float32(gamma) == np.float32(SELU_SCALE):
        return [b.add(name, "selu", {}, [x])]
    elu = b.helper(f"{name}_elu", "elu", {"alpha": alpha}, [x])
    return [b.add(name, "mul", {}, [elu, b.constant(np.float32(gamma), f"{name}_gamma")])]
# ---------------------------------------------------------------- normalization, resampling, transposed convolution
def _per_channel(b, v, channels: int, what: str) -> np.ndarray:
    value = const_input(b, v, what).reshape(-1)
    if value.size != channels:
        raise b.fail(f"{what} must have one value per channel ({channels}), got {value.size}")
    return value


@handles("LayerNormalization")
def _layernorm(b, node, ins, attrs, name):
    """axis (the first normalized axis; not the batch), epsilon; Scale and the optional B broadcast to the
    normalized shape; stash_type ignored (float32); the Mean and InvStdDev outputs as extra layers
    (reshape, global_avgpool, sub, mul, add, pow)."""
    x = first_act(b, ins)
    full = b.rank(x)
    axis = int(attrs.get("axis", -1))
    first = axis_per_sample(b, axis, full)
    normalized = x.shape[first:]
    eps = float(attrs.get("epsilon", 1e-5))
    weights = {}
    for key, v, what in (("weight", ins[1], "Scale"), ("bias", ins[2] if len(ins) > 2 else None, "B")):
        value = const_input(b, v, what)
        value = np.zeros(normalized, np.float32) if value is None else per_sample_constant(b, value, full, what)
        try:
            weights[key] = np.broadcast_to(value, normalized)
        except ValueError:
            raise b.fail(f"{what} has shape {list(value.shape)}, which does not broadcast to the normalized shape "
                         f"{list(normalized)} (axes {axis}..-1)") from None
    outs = [b.add(name, "layernorm", {"axis": axis, "eps": eps}, [x], weights)]
    wanted = [o in b.used for o in node.output[1:3]]
    if any(wanted):
        # Mean and InvStdDev keep the input's rank with the normalized axes of size 1.
        outer, count = int(np.prod(x.shape[:first])), int(np.prod(normalized))
        stat_shape = [*x.shape[:first], *[1] * len(normalized)]
        lead = [] if b.batched else [1]  # global_avgpool runs per index of a whole tensor's leading axis
        rows = b.helper(f"{name}_rows", "reshape", {"shape": [*lead, outer, count, 1]}, [x])
        mean = b.helper(f"{name}_mean", "reshape", {"shape": stat_shape},
                        [b.helper(f"{name}_mean_rows", "global_avgpool", {}, [rows])])
        deviation = b.helper(f"{name}_deviation", "sub", {}, [x, mean])
        squares = b.helper(f"{name}_squares", "reshape", {"shape": [*lead, outer, count, 1]},
                           [b.helper(f"{name}_squares_full", "mul", {}, [deviation, deviation])])
        variance = b.helper(f"{name}_variance", "global_avgpool", {}, [squares])
        shifted = b.helper(f"{name}_variance_eps", "add", {}, [variance, b.constant(np.full(1, eps), f"{name}_eps")])
        inv_std = b.helper(f"{name}_inv_std_rows", "pow", {}, [shifted, b.constant(np.full(1, -0.5), f"{name}_half")])
        outs += [mean, b.helper(f"{name}_inv_std", "reshape", {"shape": stat_shape}, [inv_std])]
    return outs


@handles("GroupNormalization")
def _groupnorm(b, node, ins, attrs, name):
    """num_groups, epsilon; scale and bias per channel (opset ≥ 21) or per group (opset 18: repeated over
    each group's channels); stash_type ignored (float32)."""
    x = first_act(b, ins)
    groups, channels = int(attrs["num_groups"]), b.sample(x)[0]
    params = []
    for v, what in ((ins[1], "scale"), (ins[2], "bias")):
        value = const_input(b, v, what).reshape(-1)
        if b.opset < 21 and value.size == groups and groups > 0 and channels % groups == 0:
            value = np.repeat(value, channels // groups)  # opset 18: one value per group
        params.append(_per_channel(b, value, channels, what))
    return [b.add(name, "groupnorm", {"num_groups": groups, "eps": float(attrs.get("epsilon", 1e-5))}, [x],
                  {"weight": params[0], "bias": params[1]})]


@handles("InstanceNormalization")
def _instancenorm(b, node, ins, attrs, name):
    """epsilon; scale and B per channel."""
    x = first_act(b, ins)
    c = b.sample(x)[0]
    return [b.add(name, "instancenorm", {"eps": float(attrs.get("epsilon", 1e-5))}, [x],
                  {"weight": _per_channel(b, ins[1], c, "scale"), "bias": _per_channel(b, ins[2], c, "B")})]


def _resize_targets(b, node, ins, attrs, x: Act) -> tuple[list[float] | None, list[int] | None]:
    """(scales, sizes) over every axis of N×C×..., from the inputs or attributes of Resize / Upsample."""
    sample = b.sample(x)
    full = len(sample) + 1
    if node.op_type == "Upsample" or b.opset < 11:  # Upsample, Resize-10: scales (attribute before opset 9)
        scales = attrs.get("scales") if "scales" in attrs else const_input(b, ins[1] if len(ins) > 1 else None,
                                                                         "input scales")
        if scales is None:
            raise b.fail("missing the scales")
        return [float(v) for v in np.asarray(scales).reshape(-1)], None
    scales = const_input(b, ins[2] if len(ins) > 2 else None, "input scales")
    sizes = const_input(b, ins[3] if len(ins) > 3 else None, "input sizes")
    scales = None if scales is None or scales.size == 0 else [float(v) for v in scales.reshape(-1)]
    sizes = None if sizes is None or sizes.size == 0 else [int(v) for v in sizes.reshape(-1)]
    if (scales is None) == (sizes is None):
        raise b.fail("give exactly one of the inputs scales and sizes")
    axes = attrs.get("axes")
    if axes is not None:  # opset ≥ 18: the values are for these axes only
        given = scales if scales is not None else sizes
        if len(given) != len(axes):
            raise b.fail(f"{len(given)} value(s) for {len(axes)} axes {list(axes)}")
        full_values = [1.0] * full if scales is not None else [None, *sample]
        for a, v in zip(axes, given):
            full_values[a + full if a < 0 else a] = v
        if scales is not None:
            scales = full_values
        else:
            sizes = [b.batch, *[int(v) for v in full_values[1:]]]
    return scales, sizes


@handles("Resize", "Upsample")
def _resize(b, node, ins, attrs, name):
    """Nearest and linear over the last two axes of N×C×H×W (the last of N×C×L); scales or sizes (and axes,
    keep_aspect_ratio_policy); coordinate_transformation_mode asymmetric, align_corners, half_pixel,
    pytorch_half_pixel, half_pixel_symmetric; every nearest_mode; Upsample and Resize-10 as asymmetric (nearest
    rounds down when upsampling, up when downsampling, as onnxruntime). Not cubic, not tf_crop_and_resize, not
    antialias when downsampling."""
    x = first_act(b, ins)
    sample = b.sample(x)
    mode = attrs.get("mode", "nearest")
    if mode not in ("nearest", "linear", "bilinear"):
        raise b.fail(f"mode {mode!r} is not supported; convc resizes with nearest and linear")
    spatial = len(sample) - 1
    if spatial not in (1, 2):
        raise b.fail(f"convc resizes N×C×H×W and N×C×L inputs; this input is N×{'×'.join(map(str, sample))}")
    scales, sizes = _resize_targets(b, node, ins, attrs, x)
    given = scales if scales is not None else sizes
    if len(given) != len(sample) + 1:
        raise b.fail(f"{len(given)} scales/sizes for a rank-{len(sample) + 1} input")
    if scales is not None and (scales[0] != 1.0 or scales[1] != 1.0):
        raise b.fail(f"scales {scales} resize the batch or channel axis; convc resizes the spatial axes only")
    if sizes is not None and sizes[1] != sample[0]:
        raise b.fail(f"sizes {sizes} change the channels ({sample[0]}); convc resizes the spatial axes only")
    out = {"mode": "nearest" if mode == "nearest" else "bilinear"}
    legacy = node.op_type == "Upsample" or b.opset < 11
    if legacy:
        down = [s < 1 for s in scales[2:]]
        if any(down) and not all(down):
            raise b.fail(f"scales {scales} shrink one axis and grow the other; onnxruntime rounds the two "
                         "differently, which convc does not model")
        out.update(coordinate_transformation_mode="asymmetric", nearest_mode="ceil" if all(down) else "floor")
    else:
        coordinates = attrs.get("coordinate_transformation_mode", "half_pixel")
        if coordinates in ("tf_crop_and_resize", "tf_half_pixel_for_nn"):
            raise b.fail(f"coordinate_transformation_mode {coordinates!r} is not supported")
        out.update(coordinate_transformation_mode=coordinates,
                   nearest_mode=attrs.get("nearest_mode", "round_prefer_floor"))
        if int(attrs.get("antialias", 0)) and mode != "nearest" and (
                (scales is not None and min(scales[2:]) < 1) or (sizes is not None and any(
                    o < i for o, i in zip(sizes[2:], sample[1:])))):
            raise b.fail("antialias when downsampling is not supported")
    policy = attrs.get("keep_aspect_ratio_policy", "stretch")
    if scales is not None:
        out["scale_factor"] = scales[2:]
    elif policy == "stretch":
        out["size"] = sizes[2:]
    else:  # one scale for the resized axes, the sizes rounded from it
        axes = [a + len(given) if a < 0 else a for a in attrs.get("axes", range(len(given)))]
        ratios = [sizes[a] / ([None, *sample][a]) for a in axes if a >= 2]
        scale = min(ratios) if policy == "not_larger" else max(ratios)
        out["scale_factor"] = [scale if a in axes else 1.0 for a in range(2, len(given))]
        out["size"] = [int(np.floor(scale * n + 0.5)) if a in axes else n for a, n in zip(range(2, len(given)),
                                                                                   sample[1:])]
    if spatial == 2:
        return [b.add(name, "upsample", out, [x])]
    # N×C×L as N×C×1×L
    lifted = {k: ([1.0, *v] if k == "scale_factor" else [1, *v]) if isinstance(v, list) else v for k, v in out.items()}
    x2 = b.helper(f"{name}_2d", "reshape", {"shape": [*b.lead(x), sample[0], 1, sample[1]]}, [x])
    y = b.helper(f"{name}_resize", "upsample", lifted, [x2])
    return [unlift_1d(b, y, name)]


@handles("ConvTranspose")
def _conv_transpose(b, node, ins, attrs, name):
    """2-D, and 1-D as 2-D with height 1; strides, pads, dilations, group, output_padding, output_shape,
    auto_pad (SAME_UPPER / SAME_LOWER / VALID / NOTSET), optional bias; weight [C, K/group, kh, kw] as PyTorch."""
    x = first_act(b, ins)
    w = const_input(b, ins[1], "the weight W")
    if len(b.sample(x)) == 2 and w.ndim == 3:
        x2, lifted = lift_1d(b, x, attrs, name)
        for key, lead in (("output_padding", 0), ("output_shape", 1)):
            if key in attrs:
                lifted[key] = [lead, *attrs[key]]
        y = _conv_transpose(b, node, [x2, w[:, :, None, :], *ins[2:]], lifted, b.helper_name(f"{name}_conv"))[0]
        return [unlift_1d(b, y, name)]
    spatial_2d(b, x)
    if w.ndim != 4:
        raise b.fail(f"weight W has shape {list(w.shape)}; convc supports 2-D transposed convolutions (4-D weights)")
    bias = const_input(b, ins[2] if len(ins) > 2 else None, "the bias B")
    group = int(attrs.get("group", 1))
    kernel = [int(k) for k in attrs.get("kernel_shape", w.shape[2:])]
    strides, dilations = pair(b, attrs, "strides", 1), pair(b, attrs, "dilations", 1)
    output_padding = pair(b, attrs, "output_padding", 0)
    auto_pad = attrs.get("auto_pad", "NOTSET")
    pads = [int(p) for p in attrs.get("pads", [0, 0, 0, 0])]
    if len(pads) != 4:
        raise b.fail(f"attribute 'pads' must have 4 values for a 2-D window, got {pads}")
    output_shape = attrs.get("output_shape")
    if output_shape is not None and len(output_shape) == 4:
        output_shape = output_shape[2:]  # given with the batch and channel axes
    if auto_pad in ("SAME_UPPER", "SAME_LOWER") and output_shape is None:
        output_shape = [n * s for n, s in zip(b.sample(x)[1:], strides)]
    if auto_pad == "VALID":
        pads = [0, 0, 0, 0]
    if output_shape is not None:  # the padding that gives this size; a negative total adds rows at the end
        pads = [0, 0, 0, 0]
        for axis, (n, s, k, d, op, want) in enumerate(zip(b.sample(x)[1:], strides, kernel, dilations, output_padding,
                                                          output_shape)):
            total = (n - 1) * s + op + (k - 1) * d + 1 - int(want)
            if total < 0:
                output_padding[axis] = op - total
                continue
            # As ONNX and onnxruntime: SAME_UPPER crops the odd row at the end, the others at the start.
            small, big = total // 2, total - total // 2
            pads[axis], pads[axis + 2] = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
    if any(p < 0 for p in pads):
        raise b.fail(f"negative 'pads' {pads} are not supported")
    weights = {"weight": w}
    if bias is not None:
        weights["bias"] = bias.reshape(-1)
    return [b.add(name, "conv_transpose2d", {
        "filters": int(w.shape[1]) * group, "kernel": kernel, "stride": strides, "padding": pads,
        "output_padding": output_padding, "dilation": dilations, "groups": group, "bias": bias is not None},
        [x], weights)]
# ---------------------------------------------------------------- slicing, reductions, matmul (issue 13)
def _optional_ints(b, ins, index, attrs, key, what) -> list[int] | None:
    """An integer list given as input `index` (newer opsets) or as attribute `key` (older ones), or None."""
    if len(ins) > index and ins[index] is not None:
        return ints(const_input(b, ins[index], what))
    return [int(a) for a in attrs[key]] if key in attrs else None


def _is_whole_batch(b, start: int, end: int, step: int) -> bool:
    """A slice of the batch axis that keeps all of it: 0 to the end (a huge end, or the exported batch size)."""
    return start == 0 and step == 1 and (end >= 2**31 - 1 or end == b.batch)


@handles("Slice")
def _slice(b, node, ins, attrs, name):
    """starts, ends, axes, steps as attributes (< 10) or constant inputs; negative and out-of-range indices
    clamped as ONNX does, negative steps; a slice keeping the whole batch axis is dropped, any other of axis 0
    is refused."""
    x = first_act(b, ins)
    full = b.rank(x)
    dims = [None, *x.shape] if b.batched else list(x.shape)  # the ONNX axes' sizes (the batch's unknown)
    starts = _optional_ints(b, ins, 1, attrs, "starts", "input starts")
    ends = _optional_ints(b, ins, 2, attrs, "ends", "input ends")
    if starts is None or ends is None or len(starts) != len(ends):
        raise b.fail(f"starts {starts} and ends {ends} must be given, one of each per sliced axis")
    axes = _optional_ints(b, ins, 3, attrs, "axes", "input axes")
    axes = list(range(len(starts))) if axes is None else axes
    steps = _optional_ints(b, ins, 4, {}, "steps", "input steps") or [1] * len(starts)
    kept = {"axes": [], "starts": [], "ends": [], "steps": []}
    for axis, start, end, step in zip(axes, starts, ends, steps):
        a = axis + full if axis < 0 else axis
        if b.batched and a == 0 and _is_whole_batch(b, start, end, step):
            continue
        if 0 <= a < full and dims[a] is not None and step != 0:  # else the op names the bad axis or step
            size = dims[a]
            r = range(*slice(start, end, step).indices(size))
            if r == range(size):
                continue
            start, end = r.start, r.stop if r.stop >= 0 else -size - 1  # ends as the op reads them, clamped
        for key, v in zip(kept, (axis, start, end, step)):
            kept[key].append(v)
    if not kept["axes"]:
        return [x]
    return [b.add(name, "slice", kept, [x])]


@handles("Split")
def _split(b, node, ins, attrs, name):
    """Each output its own layer: `split` with the sizes (the `split` input (≥ 13) or attribute), else `chunk`
    (num_outputs (≥ 18), or equal parts); outputs nobody reads are not computed."""
    x = first_act(b, ins)
    axis = int(attrs.get("axis", 0))
    sizes = _optional_ints(b, ins, 1, attrs, "split", "input split")
    pieces = len(node.output)
    outs = []
    for i, out in enumerate(node.output):
        if not out or out not in b.used:
            outs.append(None)
            continue
        if sizes is not None:
            op, spec = "split", {"split_size_or_sections": sizes}
        else:
            op, spec = "chunk", {"chunks": int(attrs.get("num_outputs", pieces))}
        outs.append(b.add(out, op, {**spec, "index": i, "axis": axis}, [x]))
    return outs


@handles("Squeeze", "Unsqueeze")
def _squeeze(b, node, ins, attrs, name):
    """Of activations (of constants they are folded); axes as attribute (< 13) or input; a view, no copy."""
    x = first_act(b, ins)
    axes = _optional_ints(b, ins, 1, attrs, "axes", "input axes")
    if node.op_type == "Unsqueeze":
        if not axes:
            raise b.fail("missing the axes to insert")
        return [b.add(name, "unsqueeze", {"axes": axes}, [x])]
    return [b.add(name, "squeeze", {"axes": axes} if axes else {}, [x])]


@handles("ReduceMean", "ReduceMax", "ReduceSum")
def _reduce(b, node, ins, attrs, name):
    """axes as attribute, or input (ReduceSum ≥ 13, the others ≥ 18); keepdims; noop_with_empty_axes; no axes
    reduce every axis, the batch too, which is refused."""
    x = first_act(b, ins)
    axes = _optional_ints(b, ins, 1, attrs, "axes", "input axes")
    if not axes:
        if int(attrs.get("noop_with_empty_axes", 0)):
            return [x]
        axes = list(range(b.rank(x)))
    return [b.add(name, ONNX_TYPES[node.op_type], {"axes": axes, "keepdims": bool(attrs.get("keepdims", 1))}, [x])]


@handles("Gather")
def _gather(b, node, ins, attrs, name):
    """Of an activation with constant indices (any shape; negative ones count from the end), on any axis but the
    batch; indices of rank ≥ 2 gather their flattening, then a view reshapes it."""
    x = first_act(b, ins)
    indices = np.asarray(const_input(b, ins[1], "input indices"))
    if indices.dtype.kind not in "iu":
        raise b.fail(f"indices must be integers, got {indices.dtype}")
    axis = int(attrs.get("axis", 0))
    if indices.ndim == 0:
        return [b.add(name, "gather", {"axis": axis, "indices": int(indices)}, [x])]
    flat = [int(i) for i in indices.reshape(-1)]
    if indices.ndim == 1:
        return [b.add(name, "gather", {"axis": axis, "indices": flat}, [x])]
    taken = b.helper(f"{name}_flat", "gather", {"axis": axis, "indices": flat}, [x])
    gather = b.layers[-1]
    k, _ = gather.spec.positions(gather, x.shape)  # the gathered axis in the layer's shapes
    shape = [*taken.shape[:k], *indices.shape, *taken.shape[k + 1:]]
    return [b.add(name, "reshape", {"shape": shape}, [taken])]


def _rank(b, v) -> int:
    """The ONNX rank of an operand: a run-time tensor's includes the batch axis."""
    return b.rank(v) if isinstance(v, Act) else np.ndim(v)


@handles("MatMul")
def _matmul(b, node, ins, attrs, name):
    """Any rank with NumPy broadcasting; a run-time N×K times a constant K×M is `dense` (its vectorized kernel).
    A product that moves the batch axis (a run-time N×K on the right, or on the left of a rank ≥ 3 operand)
    imports the model as a whole tensor."""
    a, w = ins[0], ins[1]
    acts = [v for v in (a, w) if isinstance(v, Act)]
    ra, rw = _rank(b, a), _rank(b, w)
    if isinstance(a, Act) and ra == 2 and not isinstance(w, Act) and rw == 2:
        k = b.sample(a)[0]
        if w.shape[0] != k:
            raise b.fail(f"the input has {k} features but the matrix is {w.shape[0]}×{w.shape[1]}")
        return [b.add(name, "dense", {"units": int(w.shape[1]), "bias": False}, [a], {"weight": w.T})]
    # When batched, the batch axis N of a run-time operand must be a batch axis of the product (torch.matmul),
    # so that each sample's product is the product of its own operands.
    if b.batched and isinstance(w, Act) and rw == 2:
        raise b.fail_batch(f"the run-time right operand is N×{w.shape[0]}: the product sums over the batch axis")
    if b.batched and isinstance(a, Act) and ra == 2 and rw > 2:
        raise b.fail_batch(f"the run-time left operand N×{a.shape[0]} times a rank-{rw} operand puts the batch "
                           "axis among the rows of each matrix")
    if b.batched and len(acts) == 2 and ra != rw:
        raise b.fail_batch(f"run-time operands of ranks {ra} and {rw} would broadcast the batch axis against "
                           "another axis")
    full = max(_rank(b, v) for v in acts)
    operands = [operand(b, v, full, f"{name}_operand{i}") for i, v in enumerate((a, w))]
    return [b.add(name, "matmul", {}, operands)]


def one_to_one(b, node, ins, attrs, name):
    """The op's attributes from the node's (the op's `onnx_attributes`), its defaults as ONNX's."""
    op = ONNX_TYPES[node.op_type]
    mapping = REGISTRY[op].onnx_attributes
    return [b.add(name, op, {native: attrs.get(onnx_name, default) for native, (onnx_name, default) in mapping.items()},
                  [first_act(b, ins)])]


# Types whose op maps them one to one (onnx_attributes) and that have no handler of their own.
for _type, _op in ONNX_TYPES.items():
    if REGISTRY[_op].onnx_attributes is not None:
        HANDLERS.setdefault(_type, one_to_one)


def check_handlers(handlers: dict[str, Handler], declared: dict[str, str]) -> None:
    """Every ONNX type an op declares has a handler, and every handler's type is declared by an op."""
    unhandled = sorted(set(declared) - set(handlers))
    undeclared = sorted(set(handlers) - set(declared))
    problems = [f"{t!r} is declared by op {declared[t]!r} but has no handler" for t in unhandled]
    problems += [f"{t!r} has a handler but no op declares it in its onnx_types" for t in undeclared]
    if problems:
        raise RuntimeError("the ONNX front end and the op registry disagree: " + "; ".join(problems))


check_handlers(HANDLERS, ONNX_TYPES)
