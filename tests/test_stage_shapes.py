"""compiler/shapes.py on its own: infer_shapes gives each layer the shape of its op's rule, checked against rules
written here from PyTorch's and NumPy's documentation (conftest.out_size, numpy.broadcast_shapes), and impossible
layers raise errors that name the layer, the attribute or output axis, and the formula with its numbers.

Graphs come from parse_description, which infers nothing, so infer_shapes is the only stage under test.
"""
from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import compiler
from compiler import ConvcWarning, ModelError, ShapeError
from compiler.frontends.description import parse_description
from compiler.shapes import infer_shapes
from compiler.verify import verify_graph
from conftest import AVX2, compile_and_check, model_dict, out_size


def parsed(layers, shape=(3, 8, 8), **extra):
    graph, _ = parse_description(model_dict(layers, shape=shape, **extra))
    return graph


def shapes(layers, shape=(3, 8, 8), **extra) -> dict:
    graph = parsed(layers, shape, **extra)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvcWarning)
        infer_shapes(graph)
    return {name: graph.shape(name) for name in graph.nx.nodes}


def shape_error(layers, shape=(3, 8, 8), error=ShapeError) -> str:
    with pytest.raises(error) as caught:
        shapes(layers, shape)
    return str(caught.value)


def floor_out(size, kernel, stride=1, pad_lo=0, pad_hi=0, dilation=1) -> int:
    """PyTorch's formula before it is clamped: floor((size + pads − dilation·(kernel − 1) − 1)/stride) + 1."""
    return (size + pad_lo + pad_hi - dilation * (kernel - 1) - 1) // stride + 1


# ---------------------------------------------------------------- conv2d
CONVS = [  # (C, H, W), attributes, and the output size per axis by PyTorch's rule
    ((3, 28, 28), {"filters": 6, "kernel": 5}, None),
    ((3, 32, 32), {"filters": 8, "kernel": 3, "padding": 1}, None),
    ((3, 32, 31), {"filters": 8, "kernel": 3, "stride": 2, "padding": 1}, None),
    ((4, 11, 27), {"filters": 4, "kernel": 3, "stride": 2, "padding": 2, "dilation": 2}, None),
    ((2, 9, 5), {"filters": 3, "kernel": [3, 1], "stride": [1, 2], "padding": [1, 0]}, None),
    ((2, 10, 9), {"filters": 4, "kernel": [3, 2], "dilation": [2, 3], "padding": [2, 0, 1, 3]}, None),
    ((6, 8, 9), {"filters": 6, "kernel": 3, "groups": 6, "stride": 3, "padding": [4, 5, 3, 4]}, None),
    ((3, 1, 1), {"filters": 2, "kernel": 1}, None),
    ((3, 5, 5), {"filters": 2, "kernel": 5, "padding": "valid"}, None),
]


def _pads(padding):
    if padding is None or padding == "valid":
        return 0, 0, 0, 0
    if isinstance(padding, int):
        return (padding,) * 4
    if len(padding) == 2:
        return padding[0], padding[1], padding[0], padding[1]
    return tuple(padding)


def _pair(v, default):
    v = default if v is None else v
    return (v, v) if isinstance(v, int) else tuple(v)


@pytest.mark.parametrize("in_shape, attrs, _", CONVS, ids=[str(c[1]) for c in CONVS])
def test_conv_output_size_is_pytorchs(in_shape, attrs, _):
    (kh, kw), (sh, sw) = _pair(attrs["kernel"], 1), _pair(attrs.get("stride"), 1)
    dh, dw = _pair(attrs.get("dilation"), 1)
    pt, pl, pb, pr = _pads(attrs.get("padding"))
    expected = (attrs["filters"], out_size(in_shape[1], kh, sh, dh, pt, pb), out_size(in_shape[2], kw, sw, dw, pl, pr))
    assert shapes([{"name": "c", "op": "conv2d", **attrs}], in_shape)["c"] == expected


@pytest.mark.parametrize("size, kernel, stride, dilation", [(7, 3, 2, 1), (8, 3, 2, 1), (5, 4, 3, 1), (9, 3, 1, 2),
                                                            (1, 3, 1, 1), (6, 2, 4, 2)])
def test_same_padding_gives_ceil_of_size_over_stride(size, kernel, stride, dilation):
    """TensorFlow's and PyTorch's "same": out = ⌈size / stride⌉, whatever the kernel."""
    got = shapes([{"name": "c", "op": "conv2d", "filters": 2, "kernel": kernel, "stride": stride,
                   "dilation": dilation, "padding": "same"}], (1, size, size + 1))["c"]
    assert got == (2, math.ceil(size / stride), math.ceil((size + 1) / stride))


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(st.integers(1, 12), st.integers(1, 12), st.integers(1, 6), st.integers(1, 6), st.integers(1, 3),
       st.integers(1, 3), st.integers(1, 3), st.lists(st.integers(0, 3), min_size=4, max_size=4))
def test_conv_shape_or_an_error_with_the_formula(h, w, kh, kw, stride, dh, dw, pads):
    """Any conv: PyTorch's output size, or (where it is ≤ 0) a ShapeError naming the layer and the axis and showing
    the formula with this layer's numbers."""
    pt, pl, pb, pr = pads
    layer = {"name": "conv_q", "op": "conv2d", "filters": 3, "kernel": [kh, kw], "stride": stride,
             "dilation": [dh, dw], "padding": pads}
    oh, ow = floor_out(h, kh, stride, pt, pb, dh), floor_out(w, kw, stride, pl, pr, dw)
    if oh >= 1 and ow >= 1:
        assert shapes([layer], (2, h, w))["conv_q"] == (3, oh, ow)
        return
    message = shape_error([layer], (2, h, w))
    axis, size, k, d, lo, hi, out = (("height", h, kh, dh, pt, pb, oh) if oh < 1 else
                                      ("width", w, kw, dw, pl, pr, ow))
    assert "layer 'conv_q' (conv2d)" in message and f"output {axis}" in message
    # the formula of the docs, (size − kernel + pads)/stride + 1 = out, with this layer's numbers
    kernel = f"{k}" if d == 1 else f"{d}·({k}−1) − 1"
    padding = f"2·{lo}" if lo == hi else f"{lo} + {hi}"
    assert re.search(rf"\(({size} − {re.escape(kernel)} \+ {re.escape(padding)})\)/{stride}⌋? \+ 1 = {out}\b",
                     message), message


def test_conv_error_of_the_docs_example():
    """docs/format.md's example: a 7×7 kernel on a 5×5 input."""
    message = shape_error([{"name": "conv1", "op": "conv2d", "filters": 4, "kernel": 7}], (1, 5, 5))
    assert "layer 'conv1' (conv2d): output height (5 − 7 + 2·0)/1 + 1 = -1 ≤ 0" in message


def test_conv_groups_must_divide_channels_and_filters():
    message = shape_error([{"name": "g", "op": "conv2d", "filters": 4, "kernel": 1, "groups": 2}], (3, 4, 4),
                          error=ModelError)
    assert "layer 'g'" in message and "'groups' = 2" in message and "(3)" in message


def test_conv_reads_a_c_h_w_tensor_only():
    message = shape_error([{"name": "f", "op": "flatten"}, {"name": "c", "op": "conv2d", "filters": 2, "kernel": 1}])
    assert "layer 'c'" in message and "C×H×W" in message and "192" in message


def test_a_stride_that_skips_input_rows_warns_and_keeps_the_warning():
    graph = parsed([{"name": "c", "op": "conv2d", "filters": 2, "kernel": 2, "stride": 2}], (1, 5, 4))
    with pytest.warns(ConvcWarning, match="'c'.*output height.*last 1 input row"):
        infer_shapes(graph)
    assert graph.shape("c") == (2, 2, 2) and len(graph.warnings) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvcWarning)
        infer_shapes(graph)  # again: the warnings are this run's, not accumulated
    assert len(graph.warnings) == 1


# ---------------------------------------------------------------- pooling
POOLS = [  # op, (C, H, W), attributes; stride defaults to the kernel
    ("maxpool2d", (3, 8, 8), {"kernel": 2}),
    ("maxpool2d", (3, 9, 8), {"kernel": 3, "stride": 2, "padding": 1}),
    ("maxpool2d", (2, 12, 13), {"kernel": [3, 2], "stride": [2, 3], "padding": [1, 1, 0, 1], "dilation": [2, 1],
                                "ceil_mode": True}),
    ("maxpool2d", (2, 5, 5), {"kernel": 2, "ceil_mode": True}),
    ("maxpool2d", (2, 6, 6), {"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    ("avgpool2d", (3, 7, 7), {"kernel": 3, "stride": 2}),
    ("avgpool2d", (3, 7, 6), {"kernel": 2, "padding": 1, "ceil_mode": True}),
]


@pytest.mark.parametrize("op, in_shape, attrs", POOLS, ids=[f"{p[0]}-{p[2]}" for p in POOLS])
def test_pool_output_size_is_pytorchs(op, in_shape, attrs):
    (kh, kw) = _pair(attrs["kernel"], 1)
    sh, sw = _pair(attrs.get("stride"), attrs["kernel"])
    dh, dw = _pair(attrs.get("dilation"), 1)
    pt, pl, pb, pr = _pads(attrs.get("padding"))
    ceil = attrs.get("ceil_mode", False)
    expected = (in_shape[0], out_size(in_shape[1], kh, sh, dh, pt, pb, ceil),
                out_size(in_shape[2], kw, sw, dw, pl, pr, ceil))
    assert shapes([{"name": "p", "op": op, **attrs}], in_shape)["p"] == expected


def test_pool_padding_as_wide_as_the_window_is_an_error_naming_the_attribute():
    message = shape_error([{"name": "mp", "op": "maxpool2d", "kernel": 2, "padding": 2}], error=ModelError)
    assert "layer 'mp'" in message and "attribute 'padding'" in message and "window (2)" in message


def test_pool_window_larger_than_the_input_shows_the_formula():
    message = shape_error([{"name": "mp", "op": "maxpool2d", "kernel": [2, 5]}], (1, 4, 3))
    assert "layer 'mp' (maxpool2d): output width (3 − 5 + 2·0)/5 + 1 = 0 ≤ 0" in message


# ---------------------------------------------------------------- the other ops
def test_dense_global_pools_and_shape_keeping_ops():
    got = shapes([{"name": "gap", "op": "global_avgpool", "inputs": ["x"]},
                  {"name": "gmp", "op": "global_maxpool", "inputs": ["x"]},
                  {"name": "fc", "op": "dense", "units": 7, "inputs": ["x"]},
                  {"name": "bn", "op": "batchnorm", "inputs": ["x"]},
                  {"name": "sm", "op": "softmax", "inputs": ["x"]},
                  {"name": "act", "op": "leaky_relu", "inputs": ["x"]},
                  {"name": "tr", "op": "transpose", "perm": [0, 3, 1, 2], "inputs": ["x"]},
                  {"name": "pd", "op": "pad", "pads": [0, 1, 2, 3, 4, 5], "inputs": ["x"]}], (3, 5, 6))
    assert got["gap"] == got["gmp"] == (3, 1, 1)
    assert got["fc"] == (7,)
    assert got["bn"] == got["sm"] == got["act"] == (3, 5, 6)
    assert got["tr"] == (6, 3, 5)
    assert got["pd"] == (3 + 0 + 3, 5 + 1 + 4, 6 + 2 + 5)


def test_attribute_errors_name_the_attribute_and_the_numbers():
    message = shape_error([{"name": "tr", "op": "transpose", "perm": [0, 2, 2, 1]}])
    assert "layer 'tr'" in message and "attribute 'perm' [0, 2, 2, 1]" in message
    message = shape_error([{"name": "pd", "op": "pad", "pads": [1, 1]}])
    assert "layer 'pd'" in message and "attribute 'pads' has 2 values" in message and "2·3 = 6" in message
    message = shape_error([{"name": "sm", "op": "softmax", "axis": 4}])  # axes count the batch: 0..3
    assert "layer 'sm'" in message and "attribute 'axis' = 4" in message and "0..3" in message


# ---------------------------------------------------------------- broadcasting
BROADCASTS = [((3, 4, 5), (5,)), ((3, 4, 5), (4, 1)), ((3, 4, 5), (3, 1, 1)), ((3, 1, 5), (4, 1)), ((1,), (2, 3)),
              ((6,), (6,)), ((2, 1, 1), (1, 3, 1))]


@pytest.mark.parametrize("x_shape, k_shape", BROADCASTS, ids=str)
@pytest.mark.parametrize("op", ["add", "mul", "max"])
def test_broadcasting_is_numpys(op, x_shape, k_shape):
    got = shapes([{"name": "k", "op": "constant", "shape": list(k_shape)},
                  {"name": "y", "op": op, "inputs": ["x", "k"]}], x_shape)
    assert got["y"] == np.broadcast_shapes(x_shape, k_shape)


@settings(max_examples=80, deadline=None, derandomize=True, database=None)
@given(st.lists(st.integers(1, 3), min_size=1, max_size=3), st.lists(st.integers(1, 3), min_size=1, max_size=3))
def test_broadcast_shape_or_an_error_naming_both_inputs(a, b):
    layers = [{"name": "k", "op": "constant", "shape": b}, {"name": "y", "op": "sub", "inputs": ["x", "k"]}]
    try:
        expected = np.broadcast_shapes(tuple(a), tuple(b))
    except ValueError:
        message = shape_error(layers, tuple(a))
        assert "layer 'y'" in message and "'x'" in message and "'k'" in message and "neither is 1" in message
        return
    assert shapes(layers, tuple(a))["y"] == expected


def test_broadcast_error_shows_the_axis_and_sizes():
    message = shape_error([{"name": "k", "op": "constant", "shape": [4, 6]},
                           {"name": "y", "op": "add", "inputs": ["x", "k"]}], (3, 4, 5))
    assert "input 'x' (3×4×5)" in message and "input 'k' (4×6)" in message
    assert "axis -1" in message and "5 and 6" in message


# ---------------------------------------------------------------- concat
@pytest.mark.parametrize("axis", [1, 2, 3, -1, -3])
def test_concat_sums_the_axis_and_keeps_the_others(axis):
    """axis counts the batch as 0 (N×3×4×5); the shapes here are per sample."""
    x = (3, 4, 5)
    index = axis - 1 if axis > 0 else axis
    other = list(x)
    other[index] = 2
    got = shapes([{"name": "k", "op": "constant", "shape": other},
                  {"name": "cat", "op": "concat", "axis": axis, "inputs": ["x", "k", "x"]}], x)
    expected = list(x)
    expected[index] = x[index] + 2 + x[index]
    assert got["cat"] == tuple(expected)


def test_concat_errors_name_the_inputs_and_the_axis():
    message = shape_error([{"name": "k", "op": "constant", "shape": [2, 4, 6]},
                           {"name": "cat", "op": "concat", "inputs": ["x", "k"]}], (3, 4, 5))
    assert "layer 'cat'" in message and "axis 1" in message  # the default: the channels
    assert "'x' is 3×4×5" in message and "'k' is 2×4×6" in message
    message = shape_error([{"name": "cat", "op": "concat", "axis": 4, "inputs": ["x", "x"]}], (3, 4, 5))
    assert "attribute 'axis' = 4" in message and "rank-4" in message


# ---------------------------------------------------------------- views
def test_views_keep_the_values_under_another_shape():
    got = shapes([{"name": "f", "op": "flatten", "inputs": ["x"]},
                  {"name": "r", "op": "reshape", "shape": [-1, 10], "inputs": ["x"]},
                  {"name": "r2", "op": "reshape", "shape": [5, 2, 6], "inputs": ["x"]},
                  {"name": "d", "op": "dropout", "inputs": ["x"]},
                  {"name": "i", "op": "identity", "inputs": ["x"]}], (3, 4, 5))
    assert got["f"] == (60,) and got["r"] == (6, 10) and got["r2"] == (5, 2, 6)
    assert got["d"] == got["i"] == (3, 4, 5)


def test_reshape_errors_name_the_attribute_and_the_counts():
    message = shape_error([{"name": "r", "op": "reshape", "shape": [7, -1]}], (3, 4, 5))
    assert "layer 'r'" in message and "attribute 'shape' [7, -1]" in message and "60 is not a multiple of 7" in message
    message = shape_error([{"name": "r", "op": "reshape", "shape": [7, 9]}], (3, 4, 5))
    assert "(60 values)" in message and "(63 values)" in message


# ---------------------------------------------------------------- the stage
def test_shapes_follow_the_dag_whatever_the_order_of_the_layers():
    """Layers listed before the ones they read (forward references) get their shapes after them; `check` sees each
    layer once, after its inputs."""
    graph = parsed([{"name": "head", "op": "dense", "units": 3, "inputs": ["pool"]},
                    {"name": "pool", "op": "global_avgpool", "inputs": ["body"]},
                    {"name": "body", "op": "conv2d", "filters": 4, "kernel": 3, "inputs": ["x"]}], (2, 6, 6))
    seen = []

    def check(g, layer):
        assert all(src in seen for src in layer.inputs), (layer.name, seen)
        assert g.shape(layer.name)
        seen.append(layer.name)
    infer_shapes(graph, check=check)
    assert sorted(seen) == ["body", "head", "pool", "x"]
    assert (graph.shape("body"), graph.shape("pool"), graph.shape("head")) == ((4, 4, 4), (4, 1, 1), (3,))


def test_the_inferred_graph_passes_verify_graph_once_weights_exist():
    from compiler.validate import init_weights

    graph = parsed([{"name": "c", "op": "conv2d", "filters": 4, "kernel": 3, "padding": 1},
                    {"name": "fc", "op": "dense", "units": 2}])
    infer_shapes(graph)
    init_weights(graph, 0)
    verify_graph(graph)
    graph.nx.nodes["c"]["shape"] = (4, 8, 7)  # one column short of what the rule gives
    with pytest.raises(Exception, match="'c'.*4×8×7.*4×8×8"):
        verify_graph(graph)


# ---------------------------------------------------------------- ceil_mode windows larger than the input
# PyTorch's and ONNX's pools round up with ceil_mode even when the (dilated) window is larger than the padded
# input: out = ⌈(size + pads − span)/stride⌉ + 1, so MaxPool2d(3, stride=2, ceil_mode=True) on 2×2 gives 1×1
# (⌈−1/2⌉ + 1 = 1), one window over the whole input. With stride 1 (or a shortfall of a whole stride) it is
# still an error.
CEIL_WINDOWS = [(2, 3, 2, 0), (1, 2, 2, 0), (4, 7, 3, 1), (2, 5, 3, 1), (3, 6, 4, 1)]
CEIL_ERRORS = [(2, 3, 1, 0), (1, 4, 2, 0)]


@pytest.mark.parametrize("op", ["maxpool2d", "avgpool2d"])
@pytest.mark.parametrize("size, kernel, stride, padding", CEIL_WINDOWS + CEIL_ERRORS, ids=str)
def test_ceil_mode_keeps_a_window_larger_than_the_input(op, size, kernel, stride, padding):
    expected = out_size(size, kernel, stride, 1, padding, padding, ceil_mode=True)
    layer = {"name": "p", "op": op, "kernel": kernel, "stride": stride, "padding": padding, "ceil_mode": True}
    if (size, kernel, stride, padding) in CEIL_ERRORS:
        assert expected == 0
        assert "layer 'p'" in shape_error([layer], (2, size, size + 1))
        return
    assert expected == 1
    assert shapes([layer], (2, size, size + 1))["p"] == (2, 1, out_size(size + 1, kernel, stride, 1, padding, padding,
                                                                        ceil_mode=True))


CEIL_POOLS = [("maxpool2d", {}), ("avgpool2d", {"count_include_pad": True}),
              ("avgpool2d", {"count_include_pad": False})]


@pytest.mark.parametrize("op, extra", CEIL_POOLS, ids=["max", "avg-count-pad", "avg"])
@pytest.mark.parametrize("size, kernel, stride, padding", CEIL_WINDOWS, ids=str)
def test_ceil_mode_windows_larger_than_the_input_match_torch(op, extra, size, kernel, stride, padding):
    """The interpreter against torch itself (no C): the shape and the values."""
    torch = pytest.importorskip("torch")
    layer = {"name": "p", "op": op, "kernel": kernel, "stride": stride, "padding": padding, "ceil_mode": True,
             **extra}
    graph = compiler.load(model_dict([layer], shape=(2, size, size + 1)))
    x = np.random.default_rng(1).standard_normal((3, 2, size, size + 1))
    if op == "maxpool2d":
        want = torch.nn.functional.max_pool2d(torch.from_numpy(x), kernel, stride, padding, ceil_mode=True)
    else:
        want = torch.nn.functional.avg_pool2d(torch.from_numpy(x), kernel, stride, padding, ceil_mode=True, **extra)
    want = want.numpy()
    got = compiler.interpret(graph, {"x": x}, dtype=np.float64)["p"]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("op, opt_level", [("maxpool2d", 2), ("avgpool2d", 0)])
def test_ceil_mode_windows_larger_than_the_input_compile(op, opt_level):
    """The kernels take the window over the whole input too (maxpool_padded at level 2, the plain loops): compiled
    against the interpreter (AVX2's code)."""
    layer = {"name": "p", "op": op, "kernel": 5, "stride": 3, "padding": 1, "ceil_mode": True}
    graph = compiler.load(model_dict([layer], shape=(3, 2, 3)))
    assert graph.shape("p") == (3, 1, 1)
    compile_and_check(graph, opt_level=opt_level, march=AVX2)
