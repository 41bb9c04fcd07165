"""One handler per ONNX op type: turns a node into one or a few native layers through the Builder.

HANDLERS is keyed by ONNX op type. Which types convc imports, and as which native op, the registry says
(each op's `onnx_types`; handlers shared by several types read the op from ONNX_TYPES); a handler says how.
Importing this module checks that the two agree.
Each handler's docstring is its row's note in docs/onnx.md.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

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


def _as_vector(x: Act) -> bool:
    return len(x.shape) == 1


@handles("Gemm")
def _gemm(b, node, ins, attrs, name):
    """A run-time N×K, B constant; alpha folded into the weight, beta·C into the bias (C scalar, [M] or
    [1, M]); transB; not transA."""
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


@handles("BatchNormalization")
def _batchnorm(b, node, ins, attrs, name):
    """Inference form (scale, B, mean, var, epsilon); not folded into Conv here (that is a pass's job)."""
    if any(o in b.used for o in node.output[1:]) or int(attrs.get("training_mode", 0)):
        raise b.fail("training-mode BatchNormalization (extra outputs) is not supported; export in eval mode")
    x = first_act(b, ins)
    scale, bias, mean, var = (const_input(b, v, w).reshape(-1) for v, w in
                              zip(ins[1:5], ("scale", "B", "input_mean", "input_var")))
    if any(p.size != x.shape[0] for p in (scale, bias, mean, var)):
        raise b.fail(f"scale, B, mean and var must have one value per channel ({x.shape[0]}); got sizes "
                     f"{[p.size for p in (scale, bias, mean, var)]} (non-spatial batchnorm is not supported)")
    return [b.add(name, "batchnorm", {"eps": float(attrs.get("epsilon", 1e-5))}, [x],
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


@handles("Softmax")
def _softmax(b, node, ins, attrs, name):
    """Opset ≥ 13: one axis; before 13: the flattening of axes [axis, end) (reshape, softmax, reshape)."""
    x = first_act(b, ins)
    if b.opset >= 13:
        return [b.add(name, "softmax", {"axis": int(attrs.get("axis", -1))}, [x])]
    # opset < 13: softmax over the flattening of axes [axis, end).
    axis = axis_per_sample(b, int(attrs.get("axis", 1)), len(x.shape) + 1)
    if axis == len(x.shape) - 1:
        return [b.add(name, "softmax", {"axis": -1}, [x])]
    flat_shape = (*x.shape[:axis], int(np.prod(x.shape[axis:])))
    flat = b.helper(f"{name}_flat", "reshape", {"shape": list(flat_shape)}, [x])
    soft = b.helper(f"{name}_2d", "softmax", {"axis": -1}, [flat])
    return [b.add(name, "reshape", {"shape": list(x.shape)}, [soft])]


@handles("Flatten")
def _flatten(b, node, ins, attrs, name):
    """Axis 1 (or an axis after size-1 axes)."""
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
    """Constant shape; 0 copies, one −1; first entry 0, −1 or the exported batch size; a flatten when the
    result is N×F."""
    x = first_act(b, ins)
    shape = ints(const_input(b, ins[1], "input shape")) if len(ins) > 1 else list(attrs.get("shape", []))
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
    full = len(x.shape) + 1
    perm = [int(p) for p in attrs.get("perm", list(range(full))[::-1])]
    if perm == list(range(full)):
        return [x]
    return [b.add(name, "transpose", {"perm": perm}, [x])]


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
    full = len(acts[0].shape) + 1
    operands = [operand(b, v, full, f"{name}_operand{i}") for i, v in enumerate(ins)]
    if len(operands) == 1:
        return [operands[0]]
    return [b.add(name, "concat", {"axis": int(attrs["axis"]) if "axis" in attrs else 1}, operands)]


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
    """size, alpha, beta, bias; the ONNX window (it differs from torch's for even sizes)."""
    x = first_act(b, ins)
    return [b.add(name, "lrn", {"size": int(attrs["size"]), "alpha": float(attrs.get("alpha", 1e-4)),
                                "beta": float(attrs.get("beta", 0.75)), "bias": float(attrs.get("bias", 1.0))},
                  [x])]


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
    full = len(x.shape) + 1
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
        if a == 0 and _is_whole_batch(b, start, end, step):
            continue
        if 0 < a < full and step != 0:  # else the op names the bad axis or step
            size = x.shape[a - 1]
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
        axes = list(range(len(x.shape) + 1))
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


def _rank(v) -> int:
    """The ONNX rank of an operand: a run-time tensor's includes the batch axis."""
    return len(v.shape) + 1 if isinstance(v, Act) else np.ndim(v)


@handles("MatMul")
def _matmul(b, node, ins, attrs, name):
    """Any rank with NumPy broadcasting when the batch stays the leading axis of the result; a run-time N×K
    times a constant K×M is `dense` (its vectorized kernel); a run-time N×K on the right, or by a constant of
    rank ≥ 3, moves the batch axis and is refused."""
    a, w = ins[0], ins[1]
    acts = [v for v in (a, w) if isinstance(v, Act)]
    ra, rw = _rank(a), _rank(w)
    if isinstance(a, Act) and ra == 2 and not isinstance(w, Act) and rw == 2:
        if w.shape[0] != a.shape[0]:
            raise b.fail(f"the input has {a.shape[0]} features but the matrix is {w.shape[0]}×{w.shape[1]}")
        return [b.add(name, "dense", {"units": int(w.shape[1]), "bias": False}, [a], {"weight": w.T})]
    # The batch axis N of a run-time operand must be a batch axis of the product (torch.matmul), so that each
    # sample's product is the product of its own operands.
    if isinstance(w, Act) and rw == 2:
        raise b.fail(f"the run-time right operand is N×{w.shape[0]}: the product sums over the batch axis")
    if isinstance(a, Act) and ra == 2 and rw > 2:
        raise b.fail(f"the run-time left operand N×{a.shape[0]} times a rank-{rw} operand puts the batch axis "
                     "among the rows of each matrix")
    if len(acts) == 2 and ra != rw:
        raise b.fail(f"run-time operands of ranks {ra} and {rw} would broadcast the batch axis against another axis")
    full = max(_rank(v) for v in acts)
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
