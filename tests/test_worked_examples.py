"""The worked examples of the design notes (CS231n's "Convolutional Neural Networks" arithmetic),
computed through convc's API: summary rows, conv_output_size, graph shapes, warnings and errors.

Every expected number is written out from the arithmetic in the example, never taken from convc.
"""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import compiler
from conftest import model_dict


def load(desc):
    with warnings.catch_warnings():
        warnings.simplefilter("error", compiler.ConvcWarning)  # none of these examples should warn
        return compiler.load(desc)


def row(graph, name):
    rows = {r.name: r for r in graph.summary().rows}
    return rows[name]


# ---------------------------------------------------------------- parameters per filter
@pytest.mark.parametrize("filters", [1, 10])
def test_32x32x3_input_5x5_filters_have_76_parameters_each(filters):
    graph = load(model_dict([{"name": "conv", "op": "conv2d", "filters": filters, "kernel": 5}], shape=(3, 32, 32)))
    per_filter = 5 * 5 * 3 + 1
    assert per_filter == 76
    assert row(graph, "conv").params == filters * 76
    assert graph.summary().params == filters * 76
    assert graph.weights["conv.weight"].shape == (filters, 3, 5, 5)
    assert graph.weights["conv.bias"].shape == (filters,)


def test_16x16x20_input_3x3_filters_have_181_parameters_each():
    graph = load(model_dict([{"name": "conv", "op": "conv2d", "filters": 4, "kernel": 3, "padding": 1}],
                            shape=(20, 16, 16)))
    assert 3 * 3 * 20 + 1 == 181
    assert row(graph, "conv").params == 4 * 181
    assert graph.shape("conv") == (4, 16, 16)


def test_no_bias_drops_one_parameter_per_filter():
    graph = load(model_dict([{"name": "conv", "op": "conv2d", "filters": 4, "kernel": 3, "bias": False}],
                            shape=(20, 16, 16)))
    assert row(graph, "conv").params == 4 * 180


def test_alexnet_first_layer():
    """227×227×3, 96 filters of 11×11, stride 4, no padding: (227 − 11)/4 + 1 = 55; 96·(11·11·3 + 1) = 34,944
    parameters; each of the 55·55·96 outputs costs 11·11·3 = 363 multiply-adds."""
    graph = load(model_dict([{"name": "conv1", "op": "conv2d", "filters": 96, "kernel": 11, "stride": 4}],
                            shape=(3, 227, 227)))
    assert compiler.conv_output_size(227, 11, 4, 0) == 55
    assert graph.shape("conv1") == (96, 55, 55)
    r = row(graph, "conv1")
    assert r.params == 34_944
    assert r.macs == 55 * 55 * 96 * 363 == 105_415_200
    assert "55" in r.formula and "227" in r.formula and "11" in r.formula


def test_dense_parameters():
    """A fully connected layer from 4×4×16 to 10 units: 256·10 weights + 10 biases."""
    graph = load(model_dict([{"name": "fc", "op": "dense", "units": 10}], shape=(16, 4, 4)))
    assert row(graph, "fc").params == 2570
    assert row(graph, "fc").macs == 2560


# ---------------------------------------------------------------- output sizes
@pytest.mark.parametrize("stride,out", [(1, 5), (2, 3)])
def test_7x7_input_3x3_filter(stride, out):
    """(W − F + 2P)/S + 1: (7 − 3)/1 + 1 = 5 and (7 − 3)/2 + 1 = 3."""
    assert compiler.conv_output_size(7, 3, stride, 0) == out
    graph = load(model_dict([{"name": "c", "op": "conv2d", "filters": 1, "kernel": 3, "stride": stride}],
                            shape=(1, 7, 7)))
    assert graph.shape("c") == (1, out, out)
    assert row(graph, "c").formula.endswith(f"= {out}")


def test_5x5x3_input_two_3x3_filters_stride_2_pad_1():
    """The animated demo: (5 − 3 + 2·1)/2 + 1 = 3, so 3×3×2 outputs."""
    graph = load(model_dict([{"name": "c", "op": "conv2d", "filters": 2, "kernel": 3, "stride": 2, "padding": 1}],
                            shape=(3, 5, 5)))
    assert graph.shape("c") == (2, 3, 3)


@pytest.mark.parametrize("kernel", [1, 3, 5, 7])
def test_zero_padding_of_half_the_filter_keeps_the_size(kernel):
    """P = (F − 1)/2 with S = 1 preserves W, and padding "same" picks it."""
    p = (kernel - 1) // 2
    assert compiler.conv_output_size(13, kernel, 1, p) == 13
    graph = load(model_dict([{"name": "a", "op": "conv2d", "filters": 2, "kernel": kernel, "padding": p},
                             {"name": "b", "op": "conv2d", "filters": 2, "kernel": kernel, "padding": "same",
                              "inputs": ["x"]}], shape=(3, 13, 9)))
    assert graph.shape("a") == graph.shape("b") == (2, 13, 9)


def test_stride_3_on_7x7_does_not_fit_and_warns():
    """(7 − 3)/3 + 1 is not an integer: convc floors to 2 and warns that the last row/column is never read."""
    desc = model_dict([{"name": "conv_s3", "op": "conv2d", "filters": 1, "kernel": 3, "stride": 3}], shape=(1, 7, 7))
    with pytest.warns(compiler.ConvcWarning) as record:
        graph = compiler.load(desc)
    messages = [str(w.message) for w in record if issubclass(w.category, compiler.ConvcWarning)]
    assert any("conv_s3" in m and "row" in m and "never read" in m for m in messages), messages
    assert any("conv_s3" in m and "column" in m and "never read" in m for m in messages), messages
    assert graph.shape("conv_s3") == (1, 2, 2)
    assert len(graph.summary().warnings) == 2


def test_warning_only_for_the_axis_that_drops_input():
    desc = model_dict([{"name": "c", "op": "conv2d", "filters": 1, "kernel": 3, "stride": 2}], shape=(1, 7, 8))
    with pytest.warns(compiler.ConvcWarning) as record:
        graph = compiler.load(desc)
    messages = [str(w.message) for w in record if issubclass(w.category, compiler.ConvcWarning)]
    assert len(messages) == 1 and "width" in messages[0] and "column" in messages[0], messages
    assert graph.shape("c") == (1, 3, 3)


def test_remainder_in_the_padding_does_not_warn():
    """W = 8, F = 3, P = 1, S = 2: (8 − 3 + 2)/2 is not whole, but the unread column is padding."""
    graph = load(model_dict([{"name": "c", "op": "conv2d", "filters": 1, "kernel": 3, "stride": 2, "padding": 1}],
                            shape=(1, 8, 8)))
    assert graph.shape("c") == (1, 4, 4)
    assert graph.warnings == []


@pytest.mark.parametrize("size,kernel,padding,stride,want", [
    (5, 7, 0, 1, "(5 − 7 + 2·0)/1 + 1 = -1"),
    (2, 3, 0, 1, "(2 − 3 + 2·0)/1 + 1 = 0"),
    (4, 9, 1, 2, "(4 − 9 + 2·1)/2 + 1 = -1"),
])
def test_impossible_output_size_is_a_shape_error_with_the_formula(size, kernel, padding, stride, want):
    assert compiler.conv_output_size(size, kernel, stride, padding) <= 0
    desc = model_dict([{"name": "conv1", "op": "conv2d", "filters": 2, "kernel": kernel, "stride": stride,
                        "padding": padding}], shape=(1, size, size + 3 * kernel))
    with pytest.raises(compiler.ShapeError) as e:
        compiler.load(desc)
    msg = str(e.value)
    assert "conv1" in msg and "height" in msg, msg
    assert want in msg, msg
    assert re.search(r"≤ 0|<= 0", msg), msg


def test_impossible_pool_is_a_shape_error_naming_the_layer():
    desc = model_dict([{"name": "c", "op": "conv2d", "filters": 2, "kernel": 3},
                       {"name": "pool9", "op": "maxpool2d", "kernel": [2, 9]}], shape=(1, 10, 10))
    with pytest.raises(compiler.ShapeError) as e:
        compiler.load(desc)
    msg = str(e.value)
    assert "pool9" in msg and "width" in msg and "(8 − 9 + 2·0)/9 + 1 = 0" in msg, msg


# ---------------------------------------------------------------- pooling
@pytest.mark.parametrize("shape", [(64, 224, 224), (3, 32, 32), (5, 6, 10)])
def test_2x2_max_pool_stride_2_keeps_a_quarter_and_the_depth(shape):
    graph = load(model_dict([{"name": "pool", "op": "maxpool2d", "kernel": 2, "stride": 2}], shape=shape))
    c, h, w = shape
    out = graph.shape("pool")
    assert out == (c, h // 2, w // 2)
    assert out[0] == c
    assert np.prod(out) / np.prod(shape) == 0.25
    assert row(graph, "pool").params == 0


def test_2x2_max_pool_picks_the_max_of_each_block():
    """The notes' 4×4 example: max pooling with 2×2 filters and stride 2 gives [[6, 8], [3, 4]]."""
    graph = load(model_dict([{"name": "pool", "op": "maxpool2d", "kernel": 2, "stride": 2}], shape=(1, 4, 4)))
    x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], np.float32).reshape(1, 1, 4, 4)
    want = np.array([[6, 8], [3, 4]], np.float32).reshape(1, 1, 2, 2)
    np.testing.assert_array_equal(compiler.interpret(graph, {"x": x})["pool"], want)
    np.testing.assert_array_equal(compiler.compile(graph)(x), want)


def test_overlapping_pool_3x3_stride_2():
    """F = 3, S = 2 on 55×55: (55 − 3)/2 + 1 = 27 (AlexNet's overlapping pooling)."""
    graph = load(model_dict([{"name": "pool", "op": "maxpool2d", "kernel": 3, "stride": 2}], shape=(96, 55, 55)))
    assert graph.shape("pool") == (96, 27, 27)


# ---------------------------------------------------------------- receptive fields
@pytest.mark.parametrize("depth,rf", [(1, 3), (2, 5), (3, 7)])
def test_stacked_3x3_convs_see_2n_plus_1(depth, rf):
    """Three stacked 3×3 convolutions (stride 1) see a 7×7 region of the input, like one 7×7 filter,
    with fewer parameters: 3·(C·(3·3·C) + C) vs C·(7·7·C) + C."""
    c = 4
    layers = [{"name": f"c{i}", "op": "conv2d", "filters": c, "kernel": 3, "padding": 1} for i in range(depth)]
    graph = load(model_dict(layers, shape=(c, 16, 16)))
    last = row(graph, f"c{depth - 1}")
    assert last.receptive_field == (rf, rf)
    assert graph.summary().params == depth * (c * 9 * c + c)
    if depth == 3:
        assert graph.summary().params < c * 49 * c + c


def test_receptive_field_grows_with_the_stride_before_it():
    """conv 3×3 s1 -> pool 2×2 s2 -> conv 3×3 s1: 3, then 4, then 4 + 2·2 = 8."""
    graph = load(model_dict([
        {"name": "c1", "op": "conv2d", "filters": 2, "kernel": 3},
        {"name": "p", "op": "maxpool2d", "kernel": 2},
        {"name": "c2", "op": "conv2d", "filters": 2, "kernel": 3}], shape=(1, 20, 20)))
    assert [row(graph, n).receptive_field for n in ("c1", "p", "c2")] == [(3, 3), (4, 4), (8, 8)]


# ---------------------------------------------------------------- a worked conv by hand
def test_conv_by_hand():
    """One 3×3 filter over a 4×4 input, stride 1, padding 1, computed by hand for the top-left output:
    the window is rows/cols -1..1, so it sees x[0:2, 0:2] under weight[1:3, 1:3]."""
    graph = load(model_dict([{"name": "c", "op": "conv2d", "filters": 1, "kernel": 3, "padding": 1}],
                            shape=(1, 4, 4)))
    graph.weights["c.weight"] = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
    graph.weights["c.bias"] = np.array([0.5], np.float32)
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    top_left = 4 * 0 + 5 * 1 + 7 * 4 + 8 * 5 + 0.5  # = 73.5
    center = sum(w * v for w, v in zip(range(9), [0, 1, 2, 4, 5, 6, 8, 9, 10])) + 0.5  # output (1, 1)
    for y in (compiler.interpret(graph, {"x": x})["c"], compiler.compile(graph)(x)):
        assert y.shape == (1, 1, 4, 4)
        assert y[0, 0, 0, 0] == pytest.approx(top_left)
        assert y[0, 0, 1, 1] == pytest.approx(center)


def test_subsampling_window_narrower_than_stride_does_not_warn():
    """A 1×1 stride-2 projection (ResNet) reads every other column by design; the unread last column is not news."""
    graph = load(model_dict([{"name": "proj", "op": "conv2d", "filters": 2, "kernel": 1, "stride": 2}],
                            shape=(1, 16, 16)))
    assert graph.shape("proj") == (2, 8, 8)
    assert graph.warnings == []
