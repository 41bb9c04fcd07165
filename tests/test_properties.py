"""Property tests: random valid conv/pool/dense stacks and DAGs (residual adds, concats, several outputs),
compiled == interpreter.

Descriptions are generated with their shapes tracked by PyTorch's output-size rule (not convc's),
so every generated model must also load without error. Examples are small (channels <= 8,
spatial <= 16) and derandomized, so the run is reproducible and every library lands in the
shared on-disk cache.
"""
from __future__ import annotations

import warnings

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import compiler
from compiler import passes as compiler_passes
from conftest import assert_close, model_dict, out_size

MAX_C, MAX_HW = 8, 16
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def windows_see_input(out: int, size: int, kernel: int, stride: int, dilation: int, lo: int) -> bool:
    return all(any(0 <= o * stride - lo + i * dilation < size for i in range(kernel)) for o in range(out))


def pair(draw, lo: int, hi_h: int, hi_w: int) -> tuple[int, int]:
    if draw(st.booleans()):
        v = draw(st.integers(lo, max(lo, min(hi_h, hi_w))))
        return v, v
    return draw(st.integers(lo, max(lo, hi_h))), draw(st.integers(lo, max(lo, hi_w)))


def attr(p: tuple[int, int]):
    return p[0] if p[0] == p[1] else list(p)


# ---------------------------------------------------------------- single layers with their output shape
def conv_layer(draw, shape, name):
    c, h, w = shape
    groups = draw(st.sampled_from([g for g in range(1, c + 1) if c % g == 0]))
    filters = groups * draw(st.integers(1, max(1, MAX_C // groups)))
    kh, kw = pair(draw, 1, min(5, h + 2), min(5, w + 2))
    sh, sw = pair(draw, 1, 3, 3)
    dh, dw = pair(draw, 1, 2, 2)
    mode = draw(st.sampled_from(["none", "int", "pair", "quad", "same", "valid"]))
    if mode == "same":
        padding, out = "same", (filters, -(-h // sh), -(-w // sw))
    else:
        if mode in ("none", "valid"):
            pads = (0, 0, 0, 0)
        elif mode == "int":
            pads = (draw(st.integers(0, 2)),) * 4
        elif mode == "pair":
            ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
            pads = (ph, pw, ph, pw)
        else:
            pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
        # Repair impossible windows: no dilation, then a kernel that fits the padded input.
        if dh * (kh - 1) + 1 > h + pads[0] + pads[2]:
            dh, kh = 1, min(kh, h + pads[0] + pads[2])
        if dw * (kw - 1) + 1 > w + pads[1] + pads[3]:
            dw, kw = 1, min(kw, w + pads[1] + pads[3])
        padding = {"none": None, "valid": "valid", "int": pads[0], "pair": [pads[0], pads[1]],
                   "quad": list(pads)}[mode]
        out = (filters, out_size(h, kh, sh, dh, pads[0], pads[2]), out_size(w, kw, sw, dw, pads[1], pads[3]))
    layer = {"name": name, "op": "conv2d", "filters": filters, "kernel": attr((kh, kw)), "stride": attr((sh, sw)),
             "dilation": attr((dh, dw)), "groups": groups, "bias": draw(st.booleans())}
    if padding is not None:
        layer["padding"] = padding
    return layer, out


def pool_layer(draw, shape, name):
    c, h, w = shape
    op = draw(st.sampled_from(["maxpool2d", "avgpool2d"]))
    kh, kw = pair(draw, 1, min(4, h), min(4, w))
    strided = draw(st.booleans())
    sh, sw = pair(draw, 1, 3, 3) if strided else (kh, kw)
    dh, dw = pair(draw, 1, 2, 2) if op == "maxpool2d" else (1, 1)
    if dh * (kh - 1) + 1 > h:
        dh = 1
    if dw * (kw - 1) + 1 > w:
        dw = 1
    # Padding below the (dilated) window, per convc's rule.
    pt, pb = draw(st.integers(0, dh * (kh - 1))), draw(st.integers(0, dh * (kh - 1)))
    pl, pr = draw(st.integers(0, dw * (kw - 1))), draw(st.integers(0, dw * (kw - 1)))
    ceil_mode = draw(st.booleans())
    oh, ow = out_size(h, kh, sh, dh, pt, pb, ceil_mode), out_size(w, kw, sw, dw, pl, pr, ceil_mode)
    if not (windows_see_input(oh, h, kh, sh, dh, pt) and windows_see_input(ow, w, kw, sw, dw, pl)):
        pt = pb = pl = pr = 0
        oh, ow = out_size(h, kh, sh, dh, 0, 0, ceil_mode), out_size(w, kw, sw, dw, 0, 0, ceil_mode)
    layer = {"name": name, "op": op, "kernel": attr((kh, kw)), "padding": [pt, pl, pb, pr], "ceil_mode": ceil_mode}
    if strided:
        layer["stride"] = attr((sh, sw))
    if op == "maxpool2d":
        layer["dilation"] = attr((dh, dw))
    else:
        layer["count_include_pad"] = draw(st.booleans())
    return layer, (c, oh, ow)


def pointwise_layer(draw, shape, name):
    op = draw(st.sampled_from(["relu", "leaky_relu", "relu6", "clip", "sigmoid", "tanh", "batchnorm", "softmax",
                               "dropout"]))
    layer = {"name": name, "op": op}
    if op == "leaky_relu":
        layer["negative_slope"] = draw(st.floats(0.0, 2.0))
    elif op == "clip":
        lo = draw(st.none() | st.floats(-2.0, 0.5))
        hi = draw(st.none() | st.floats(0.5, 3.0))
        layer.update({k: v for k, v in (("min", lo), ("max", hi)) if v is not None})
    elif op == "batchnorm":
        layer["eps"] = draw(st.sampled_from([1e-5, 1e-3, 0.1]))
    return layer, shape


def spatial_layer(draw, shape, name):
    """A layer that keeps a C×H×W tensor C×H×W (conv, pooling or pointwise); mostly convs and pools."""
    kind = draw(st.sampled_from(["conv", "conv", "conv", "pool", "pool", "pointwise"]))
    if kind == "conv":
        return conv_layer(draw, shape, name)
    if kind == "pool":
        return pool_layer(draw, shape, name)
    return pointwise_layer(draw, shape, name)


def reducing_layer(draw, shape, name):
    """A layer that takes any tensor to a flat one, or C×H×W to C×1×1."""
    kind = draw(st.sampled_from(["dense", "flatten", "global"] if len(shape) == 3 else ["dense"]))
    if kind == "global":
        return {"name": name, "op": draw(st.sampled_from(["global_avgpool", "global_maxpool"]))}, (shape[0], 1, 1)
    if kind == "flatten":
        return {"name": name, "op": "flatten"}, (int(np.prod(shape)),)
    units = draw(st.integers(1, 12))
    return {"name": name, "op": "dense", "units": units, "bias": draw(st.booleans())}, (units,)


def unary_layer(draw, shape, name):
    """Any one-input layer valid on `shape`; rank-reducing ones are rarer so that DAGs stay spatial."""
    if len(shape) == 3 and draw(st.integers(0, 6)) > 0:
        return spatial_layer(draw, shape, name)
    if len(shape) == 1 and draw(st.booleans()):
        return pointwise_layer(draw, shape, name)
    return reducing_layer(draw, shape, name)


# ---------------------------------------------------------------- whole models
def input_shape(draw):
    if draw(st.integers(0, 5)) == 3:  # one in six is flat (not 0: hypothesis favours boundary values)
        return (draw(st.integers(1, 12)),)
    return (draw(st.integers(1, 4)), draw(st.integers(1, MAX_HW)), draw(st.integers(1, MAX_HW)))


@st.composite
def stacks(draw):
    """A chain: conv/pool/pointwise layers, then optionally a head (global pool, flatten + dense, softmax)."""
    shape = input_shape(draw)
    in_shape, layers = shape, []
    for i in range(draw(st.integers(1, 5))):
        layer, shape = (spatial_layer if len(shape) == 3 else unary_layer)(draw, shape, f"l{i}")
        layers.append(layer)
    head = draw(st.sampled_from(["none", "classifier", "global", "dense"]))
    if head != "none":
        if head == "global" and len(shape) == 3:
            layers += [{"name": "head_pool", "op": draw(st.sampled_from(["global_avgpool", "global_maxpool"]))},
                       {"name": "head_flat", "op": "flatten"}]
        elif head == "classifier" and len(shape) == 3:
            layers.append({"name": "head_flat", "op": "flatten"})
        layers += [{"name": "head_fc", "op": "dense", "units": draw(st.integers(1, 10))}]
        if head != "dense":
            layers.append({"name": "head_softmax", "op": "softmax"})
    seed = draw(st.integers(0, 2**16))
    return model_dict(layers, shape=in_shape, name="stack", seed=seed)


@st.composite
def dags(draw):
    """A DAG over a pool of tensors: one-input layers on any tensor, adds of equal shapes, channel concats."""
    in_shape = input_shape(draw)
    tensors = {"x": in_shape}
    layers = []
    for i in range(draw(st.integers(2, 7))):
        name = f"n{i}"
        kind = draw(st.sampled_from(["unary", "unary", "add", "concat"]))
        if kind == "add":
            first = draw(st.sampled_from(sorted(tensors)))
            same = sorted(n for n, s in tensors.items() if s == tensors[first])
            others = draw(st.lists(st.sampled_from(same), min_size=1, max_size=2))  # may repeat a tensor
            layers.append({"name": name, "op": "add", "inputs": [first, *others]})
            tensors[name] = tensors[first]
            continue
        if kind == "concat":
            first = draw(st.sampled_from(sorted(tensors)))
            rest = tensors[first][1:]
            fits = sorted(n for n, s in tensors.items() if len(s) == len(tensors[first]) and s[1:] == rest)
            others = draw(st.lists(st.sampled_from(fits), min_size=1, max_size=2))
            parts = [first, *others]
            channels = sum(tensors[p][0] for p in parts)
            if len(tensors[first]) == 1 or channels <= MAX_C:
                layers.append({"name": name, "op": "concat", "inputs": parts})
                tensors[name] = (channels, *tensors[first][1:])
                continue
        src = draw(st.sampled_from(sorted(tensors)))
        layer, shape = unary_layer(draw, tensors[src], name)
        layer["inputs"] = [src]
        layers.append(layer)
        tensors[name] = shape
    extra = {}
    if draw(st.booleans()):
        names = [layer["name"] for layer in layers]
        extra["outputs"] = draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True))
    return model_dict(layers, shape=in_shape, name="dag", seed=draw(st.integers(0, 2**16)), **extra), tensors


def load_quietly(desc):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", compiler.ConvcWarning)
        return compiler.load(desc)


OPT_LEVELS = sorted(getattr(compiler_passes, "PIPELINES", {0: []}))


def check_compiled_matches_interpreter(desc, batch: int, seed: int, opt_level: int):
    graph = load_quietly(desc)
    model = compiler.compile(graph, opt_level=opt_level)
    x = np.random.default_rng(seed).standard_normal((batch, *graph.shape("x"))).astype(np.float32)
    got = model.run({"x": x})
    ref = compiler.interpret(graph, {"x": x}, dtype=np.float64)
    assert list(got) == list(graph.outputs)
    for name in graph.outputs:
        assert np.all(np.isfinite(ref[name])), name
        assert_close(got[name], ref[name])
    # The last sample alone gives the same result as inside the batch.
    alone = model.run({"x": np.ascontiguousarray(x[-1:])})
    for name in graph.outputs:
        assert_close(alone[name][0], ref[name][-1])
    return graph


@SETTINGS
@given(stacks(), st.integers(1, 3), st.integers(0, 100), st.sampled_from(OPT_LEVELS))
def test_random_stack_compiles_to_the_interpreter(desc, batch, seed, opt_level):
    graph = check_compiled_matches_interpreter(desc, batch, seed, opt_level)
    assert len(graph.layers()) == len(desc["layers"]) + 1


@SETTINGS
@given(dags(), st.integers(1, 3), st.integers(0, 100), st.sampled_from(OPT_LEVELS))
def test_random_dag_compiles_to_the_interpreter(desc_and_shapes, batch, seed, opt_level):
    desc, shapes = desc_and_shapes
    graph = check_compiled_matches_interpreter(desc, batch, seed, opt_level)
    # The independently tracked shapes agree with convc's shape inference.
    for name, shape in shapes.items():
        assert graph.shape(name) == shape, name
    consumed = {i for layer in desc["layers"] for i in layer["inputs"]}
    want = desc.get("outputs") or [l["name"] for l in desc["layers"] if l["name"] not in consumed]
    assert graph.outputs == want


# ---------------------------------------------------------------- the output-size rule itself (no compiling)
@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.integers(1, 40), st.integers(1, 9), st.integers(1, 5), st.integers(0, 5), st.integers(1, 4),
       st.booleans())
def test_conv_output_size_counts_window_positions(size, kernel, stride, padding, dilation, ceil_mode):
    """out = the number of window starts s = 0, S, 2S, ... in the padded input. Floor mode: the whole window
    lies inside. Ceil mode (pooling, where convc requires P < window): also a last partial window,
    as long as the window before it did not reach the end and it starts inside the input or its
    leading padding (PyTorch's rule)."""
    span = dilation * (kernel - 1) + 1
    if ceil_mode:
        padding = min(padding, span - 1)
    padded = size + 2 * padding
    if ceil_mode:
        starts = [s for s in range(0, padded, stride) if s < size + padding and s - stride + span < padded]
    else:
        starts = [s for s in range(0, padded, stride) if s + span <= padded]
    # convc: a window larger than the padded input is an error, except in ceil mode, which rounds up as PyTorch and
    # ONNX do (one window, where it starts inside the input)
    expected = len(starts) if padded >= span or ceil_mode else 0
    got = compiler.conv_output_size(size, kernel, stride, padding, dilation, ceil_mode=ceil_mode)
    if expected == 0:
        assert got <= 0
    else:
        assert got == expected


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(st.sampled_from(["maxpool2d", "avgpool2d"]), st.integers(1, 6), st.integers(1, 4), st.integers(1, 3),
       st.integers(1, 3), st.integers(0, 4), st.integers(0, 4), st.booleans(), st.booleans())
def test_every_accepted_pool_window_sees_input(op, size, kernel, stride, dilation, pad_lo, pad_hi, ceil_mode,
                                               include_pad):
    """Whatever pooling convc accepts, no output is a window of padding only (-inf for max, 0/0 for mean)."""
    layer = {"name": "p", "op": op, "kernel": [kernel, 1], "stride": [stride, 1], "padding": [pad_lo, 0, pad_hi, 0],
             "ceil_mode": ceil_mode}
    if op == "maxpool2d":
        layer["dilation"] = [dilation, 1]
    else:
        layer["count_include_pad"] = include_pad
    try:
        graph = load_quietly(model_dict([layer], shape=(1, size, 2)))
    except compiler.ModelError:
        return
    out = graph.shape("p")[1]
    assert windows_see_input(out, size, kernel, stride, dilation if op == "maxpool2d" else 1, pad_lo)
    x = np.random.default_rng(0).standard_normal((1, 1, size, 2))
    assert np.all(np.isfinite(compiler.interpret(graph, {"x": x}, dtype=np.float64)["p"]))


def test_pool_window_of_padding_only_is_rejected():
    """A 1-row input between the two taps of a dilated window: every output would be -inf."""
    desc = model_dict([{"name": "p", "op": "maxpool2d", "kernel": 2, "dilation": 3, "padding": 2, "stride": 1}],
                      shape=(1, 1, 1))
    try:
        load_quietly(desc)
    except compiler.ModelError as e:
        assert "'p'" in str(e) and "padding" in str(e)
    else:
        raise AssertionError("a pool whose windows see only padding was accepted")
