"""The graph passes one at a time (compiler/passes/): drop_identity, fold_batchnorm, fuse_epilogue. Each test gives
a pass a small graph and checks the graph after it (layers, inputs, edges, the `Layer.merged` record), the folded
weights against batch norm's definition computed here in NumPy, that the pass leaves its input alone, and that
the result is still a valid graph (compiler/verify.py) computing what the input computed (the interpreter,
float64, rtol 1e-5).
"""
from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

import compiler
from compiler.passes import GRAPH_PASSES, PIPELINES, optimize
from compiler.passes.drop_identity import drop_identity
from compiler.passes.fold_batchnorm import fold_batchnorm
from compiler.passes.fold_channel_last_chain import fold_channel_last_chain
from compiler.passes.fold_channel_scale import fold_channel_scale
from compiler.passes.fold_transposed_layernorm import fold_transposed_layernorm
from compiler.passes.fuse_channel_shuffle import fuse_channel_shuffle
from compiler.passes.fuse_epilogue import fuse_epilogue
from compiler.passes.recognize_activations import recognize_activations
from compiler.passes.reduce_to_global_pool import reduce_to_global_pool
from compiler.passes.subsample_strided_pointwise import subsample_strided_pointwise
from compiler.verify import verify_graph
from conftest import model_dict, random_input


def load(layers, shape=(3, 6, 6), **extra):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", compiler.ConvcWarning)
        return compiler.load(model_dict(layers, shape=shape, **extra))


def conv(name, filters=4, kernel=3, **kw):
    return {"name": name, "op": "conv2d", "filters": filters, "kernel": kernel, "padding": kernel // 2, **kw}


def snapshot(graph) -> tuple:
    """Everything a pure pass must leave as it was in its input."""
    return (copy.deepcopy([(n, d["layer"], d["shape"]) for n, d in graph.nx.nodes(data=True)]),
            sorted(graph.nx.edges), list(graph.inputs), list(graph.outputs),
            {k: v.copy() for k, v in graph.weights.items()})


def same(a: tuple, b: tuple) -> bool:
    return a[:4] == b[:4] and a[4].keys() == b[4].keys() and all(np.array_equal(a[4][k], b[4][k]) for k in a[4])


def run(pass_, graph):
    """The pass's output, checked: its input unchanged, a valid graph with the same interface and results."""
    before = snapshot(graph)
    after = pass_(graph)
    assert same(snapshot(graph), before), f"{pass_.__name__} changed its input"
    verify_graph(after)
    assert after.inputs == graph.inputs and after.outputs == graph.outputs
    x = random_input(graph.shape(graph.inputs[0]), batch=2, seed=4)
    want = compiler.interpret(graph, {graph.inputs[0]: x}, dtype=np.float64)
    got = compiler.interpret(after, {graph.inputs[0]: x}, dtype=np.float64)
    for name in graph.outputs:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6)
    return after


def ops(graph) -> dict:
    return {layer.name: layer.op for layer in graph.layers()}


def test_the_levels_run_the_passes_in_order():
    assert PIPELINES[0] == []
    assert PIPELINES[1] == GRAPH_PASSES == [
        drop_identity, recognize_activations, fold_transposed_layernorm, fold_channel_last_chain, fold_batchnorm,
        fold_channel_scale, fuse_epilogue, reduce_to_global_pool, fuse_channel_shuffle]
    assert PIPELINES[2] == GRAPH_PASSES + [subsample_strided_pointwise]
    with pytest.raises(ValueError, match="opt_level must be one of"):
        optimize(load([conv("c")]), 3)


# ---------------------------------------------------------------- drop_identity
def test_drop_identity_bypasses_dropout_and_identity():
    graph = load([conv("c"), {"name": "d", "op": "dropout"}, {"name": "i", "op": "identity"},
                  {"name": "r", "op": "relu"}, {"name": "s", "op": "add", "inputs": ["r", "d"]}])
    after = run(drop_identity, graph)
    assert ops(after) == {"x": "input", "c": "conv2d", "r": "relu", "s": "add"}
    assert after.layer("r").inputs == ("c",) and after.layer("s").inputs == ("r", "c")
    assert sorted(after.nx.edges) == [("c", "r"), ("c", "s"), ("r", "s"), ("x", "c")]
    assert all(layer.merged == () for layer in after.layers())  # nothing was computed by the dropped layers


def test_drop_identity_rewires_every_read_of_a_layer_read_twice():
    graph = load([{"name": "d", "op": "dropout"}, {"name": "s", "op": "add", "inputs": ["d", "d"]}])
    after = run(drop_identity, graph)
    assert after.layer("s").inputs == ("x", "x") and list(after.nx.predecessors("s")) == ["x"]


def test_drop_identity_keeps_an_output_and_its_name():
    graph = load([conv("c"), {"name": "d", "op": "dropout"}, {"name": "i", "op": "identity", "inputs": ["c"]}],
                 outputs=["d", "i"])
    after = run(drop_identity, graph)
    assert ops(after) == ops(graph)


# ---------------------------------------------------------------- fold_batchnorm
def bn_fold_reference(weight, bias, gamma, beta, mean, var, eps):
    """batchnorm(W·x + b) = (W·x + b − mean)·γ/√(var + ε) + β as one affine layer: (W', b')."""
    scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
    w = weight.astype(np.float64) * scale.reshape(-1, *([1] * (weight.ndim - 1)))
    b = (bias.astype(np.float64) - mean) * scale + beta
    return w, b


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("eps", [1e-5, 0.1])
def test_fold_batchnorm_into_a_conv(bias, eps):
    graph = load([conv("c", bias=bias, groups=1), {"name": "bn", "op": "batchnorm", "eps": eps},
                  {"name": "r", "op": "relu"}])
    after = run(fold_batchnorm, graph)
    assert ops(after) == {"x": "input", "bn": "conv2d", "r": "relu"}
    folded = after.layer("bn")
    assert folded.merged == ("c",) and folded.sources == ("c", "bn") and folded.primary == "c"
    assert folded.inputs == ("x",) and folded.attrs.bias and folded.attrs.kernel == (3, 3)
    assert after.layer("r").inputs == ("bn",)
    w = graph.weights
    want_w, want_b = bn_fold_reference(w["c.weight"], w["c.bias"] if bias else np.zeros(4), w["bn.weight"],
                                       w["bn.bias"], w["bn.running_mean"], w["bn.running_var"], eps)
    np.testing.assert_allclose(after.weights["bn.weight"], want_w, rtol=1e-6)
    np.testing.assert_allclose(after.weights["bn.bias"], want_b, rtol=1e-6, atol=1e-7)
    assert sorted(after.weights) == ["bn.bias", "bn.weight"]


def test_fold_batchnorm_into_a_dense():
    graph = load([{"name": "f", "op": "flatten"}, {"name": "fc", "op": "dense", "units": 5},
                  {"name": "bn", "op": "batchnorm"}], shape=(2, 3, 3))
    after = run(fold_batchnorm, graph)
    assert ops(after) == {"x": "input", "f": "flatten", "bn": "dense"} and after.layer("bn").merged == ("fc",)
    w = graph.weights
    want_w, want_b = bn_fold_reference(w["fc.weight"], w["fc.bias"], w["bn.weight"], w["bn.bias"],
                                       w["bn.running_mean"], w["bn.running_var"], 1e-5)
    np.testing.assert_allclose(after.weights["bn.weight"], want_w, rtol=1e-6)
    np.testing.assert_allclose(after.weights["bn.bias"], want_b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("layers, outputs", [
    # the conv's output is read by another layer too: folding would change what that layer reads
    ([conv("c"), {"name": "bn", "op": "batchnorm"}, {"name": "s", "op": "add", "inputs": ["bn", "c"]}], None),
    # the conv's output is a model output
    ([conv("c"), {"name": "bn", "op": "batchnorm"}], ["c", "bn"]),
    # nothing to fold into
    ([{"name": "p", "op": "maxpool2d", "kernel": 2}, {"name": "bn", "op": "batchnorm"}], None),
], ids=["conv-read-twice", "conv-is-an-output", "after-a-pool"])
def test_fold_batchnorm_leaves_what_it_cannot_fold(layers, outputs):
    graph = load(layers, **({"outputs": outputs} if outputs else {}))
    after = run(fold_batchnorm, graph)
    assert ops(after) == ops(graph)


# ---------------------------------------------------------------- fuse_epilogue
@pytest.mark.parametrize("activation, epilogue", [
    ({"op": "relu"}, (None, 0.0, None)),
    ({"op": "relu6"}, (None, 0.0, 6.0)),
    ({"op": "clip", "min": -0.5, "max": 0.75}, (None, -0.5, 0.75)),
    ({"op": "leaky_relu", "negative_slope": 0.1}, (0.1, None, None)),
], ids=lambda v: v["op"] if isinstance(v, dict) else "")
def test_fuse_an_activation_into_a_conv(activation, epilogue):
    graph = load([conv("c"), {"name": "act", **activation}])
    after = run(fuse_epilogue, graph)
    assert ops(after) == {"x": "input", "act": "fused_conv2d"}
    fused = after.layer("act")
    assert fused.merged == ("c",) and fused.inputs == ("x",)
    assert (fused.attrs.negative_slope, fused.attrs.act_min, fused.attrs.act_max) == epilogue
    np.testing.assert_array_equal(after.weights["act.weight"], graph.weights["c.weight"])
    assert sorted(after.weights) == ["act.bias", "act.weight"]


@pytest.mark.parametrize("residual_first", [False, True])
def test_fuse_a_residual_add_then_an_activation(residual_first):
    add_inputs = ["o", "c"] if residual_first else ["c", "o"]
    graph = load([{"name": "o", "op": "tanh", "inputs": ["x"]}, conv("c", filters=3, inputs=["x"]),
                  {"name": "s", "op": "add", "inputs": add_inputs}, {"name": "r", "op": "relu6"}])
    after = run(fuse_epilogue, graph)
    assert ops(after) == {"x": "input", "o": "tanh", "r": "fused_conv2d"}
    fused = after.layer("r")
    assert fused.inputs == ("x", "o") and fused.merged == ("c", "s") and fused.sources == ("c", "s", "r")
    assert (fused.attrs.act_min, fused.attrs.act_max) == (0.0, 6.0)
    assert sorted(after.nx.predecessors("r")) == ["o", "x"]


def test_fuse_a_dense_with_its_activation():
    graph = load([{"name": "f", "op": "flatten"}, {"name": "fc", "op": "dense", "units": 6},
                  {"name": "r", "op": "relu"}], shape=(2, 3, 3))
    after = run(fuse_epilogue, graph)
    assert ops(after) == {"x": "input", "f": "flatten", "r": "fused_dense"} and after.layer("r").merged == ("fc",)


@pytest.mark.parametrize("layers, outputs", [
    # softmax is no epilogue of the kernels (it reads the whole channel axis)
    ([conv("c"), {"name": "a", "op": "softmax"}], None),
    # a broadcast add: the epilogue adds element by element only
    ([conv("c", filters=3), {"name": "k", "op": "constant", "shape": [3, 1, 1]},
      {"name": "s", "op": "add", "inputs": ["c", "k"]}], None),
    # the conv added to itself
    ([conv("c"), {"name": "s", "op": "add", "inputs": ["c", "c"]}], None),
    # the conv is read by two layers
    ([conv("c"), {"name": "r", "op": "relu"}, {"name": "t", "op": "tanh", "inputs": ["c"]}], None),
    # the conv is a model output
    ([conv("c"), {"name": "r", "op": "relu"}], ["c", "r"]),
], ids=["softmax", "broadcast-add", "self-add", "two-readers", "conv-is-an-output"])
def test_fuse_epilogue_leaves_what_it_cannot_fuse(layers, outputs):
    graph = load(layers, **({"outputs": outputs} if outputs else {}))
    after = run(fuse_epilogue, graph)
    assert ops(after) == ops(graph)


def test_fuse_takes_one_activation_only():
    graph = load([conv("c"), {"name": "r1", "op": "relu"}, {"name": "r2", "op": "relu6"}])
    after = run(fuse_epilogue, graph)
    assert ops(after) == {"x": "input", "r1": "fused_conv2d", "r2": "relu6"}
    assert after.layer("r2").inputs == ("r1",)


def test_the_passes_together_record_every_merged_layer_in_model_order():
    graph = load([conv("c", bias=False), {"name": "bn", "op": "batchnorm"}, {"name": "d", "op": "dropout"},
                  {"name": "s", "op": "add", "inputs": ["d", "x"]}, {"name": "r", "op": "relu"}], shape=(4, 5, 5))
    after = graph
    for pass_ in GRAPH_PASSES:
        after = run(pass_, after)
    assert ops(after) == {"x": "input", "r": "fused_conv2d"}
    fused = after.layer("r")
    assert fused.merged == ("c", "bn", "s") and fused.primary == "c" and fused.inputs == ("x", "x")
    assert fused.attrs.bias and fused.attrs.act_min == 0.0


# ---------------------------------------------------------------- fold_channel_last_chain
def const(name, *shape):
    return {"name": name, "op": "constant", "shape": list(shape)}


def convnext_block(c=4, tail=None, middle=None):
    """torchvision's CNBlock as the exporters write it: depthwise conv, permute to channels-last, LayerNorm,
    Linear (MatMul + Add), GELU, Linear, permute back, layer scale, residual add."""
    middle = middle if middle is not None else [{"name": "g", "op": "gelu", "inputs": ["b1"]}]
    last = middle[-1]["name"] if middle else "b1"
    return [
        conv("dw", filters=c, kernel=3, groups=c),
        {"name": "t1", "op": "transpose", "perm": [0, 2, 3, 1]},
        {"name": "ln", "op": "layernorm", "eps": 1e-6},
        const("w1", c, 4 * c), {"name": "m1", "op": "matmul", "inputs": ["ln", "w1"]},
        const("c1", 4 * c), {"name": "b1", "op": "add", "inputs": ["c1", "m1"]},
        *middle,
        const("w2", 4 * c, c), {"name": "m2", "op": "matmul", "inputs": [last, "w2"]},
        const("c2", c), {"name": "b2", "op": "add", "inputs": ["m2", "c2"]},
        {"name": "t2", "op": "transpose", "perm": tail or [0, 3, 1, 2]},
        const("gamma", c, 1, 1), {"name": "s", "op": "mul", "inputs": ["gamma", "t2"]},
        {"name": "y", "op": "add", "inputs": ["s", "dw"]},
    ]


def test_fold_channel_last_chain_turns_convnexts_block_into_1x1_convs():
    graph = load(convnext_block(), shape=(4, 5, 6))
    after = run(fold_channel_last_chain, graph)
    assert ops(after) == {"x": "input", "dw": "conv2d", "ln": "layernorm", "b1": "conv2d", "g": "gelu",
                          "b2": "conv2d", "gamma": "constant", "s": "mul", "y": "add"}
    assert after.layer("ln").inputs == ("dw",) and after.layer("s").inputs == ("gamma", "b2")
    assert (after.layer("ln").attrs.axis, after.layer("ln").attrs.last_axis) == (1, 1)
    assert after.shape("b1") == (16, 5, 6) and after.shape("g") == (16, 5, 6)
    for name, matmul, bias in (("b1", "w1", "c1"), ("b2", "w2", "c2")):
        layer = after.layer(name)
        assert layer.attrs.kernel == (1, 1) and layer.attrs.bias and layer.merged == (matmul.replace("w", "m"),)
        np.testing.assert_array_equal(after.weights[f"{name}.weight"][:, :, 0, 0], graph.weights[f"{matmul}.value"].T)
        np.testing.assert_array_equal(after.weights[f"{name}.bias"], graph.weights[f"{bias}.value"])
    assert not any(k.startswith(("w1.", "w2.", "c1.", "c2.", "m1.", "m2.")) for k in after.weights)
    # then the layer scale folds into the second conv and everything fuses
    final = run(fuse_epilogue, run(fold_channel_scale, after))
    assert ops(final) == {"x": "input", "dw": "conv2d", "ln": "layernorm", "g": "fused_conv2d", "y": "fused_conv2d"}


@pytest.mark.parametrize("middle", [
    [],  # no activation: the first Linear's output goes straight to the second
    [const("half", 1), {"name": "h", "op": "mul", "inputs": ["b1", "half"]}, {"name": "r", "op": "relu"}],
    [const("one", 1), {"name": "h", "op": "sub", "inputs": ["one", "b1"]}, {"name": "r", "op": "sigmoid"}],
], ids=["no-activation", "scalar-mul-relu", "scalar-sub-sigmoid"])
def test_fold_channel_last_chain_keeps_element_wise_layers_as_they_are(middle):
    graph = load(convnext_block(middle=middle), shape=(4, 3, 5))
    after = run(fold_channel_last_chain, graph)
    assert "transpose" not in ops(after).values() and "matmul" not in ops(after).values()
    for layer in middle:
        if layer["op"] != "constant":
            assert after.layer(layer["name"]).op == layer["op"] and after.shape(layer["name"]) == (16, 3, 5)


@pytest.mark.parametrize("layers,outputs", [
    # the last transpose is not the inverse of the first
    (convnext_block(tail=[0, 1, 2, 3])[:-3], None),
    # a layer in the chain is read outside it
    (convnext_block() + [{"name": "z", "op": "relu", "inputs": ["g"]}], ["y", "z"]),
    # a layer in the chain is a model output
    (convnext_block(), ["y", "m1"]),
    # an add of a per-channel vector that is not right after a matmul
    (convnext_block(middle=[const("v", 16), {"name": "g", "op": "add", "inputs": ["b1", "v"]}]), None),
    # a matmul by a tensor that is not a constant
    ([{"name": "t1", "op": "transpose", "perm": [0, 2, 3, 1]},
      {"name": "m", "op": "matmul", "inputs": ["t1", "t1"]}, {"name": "t2", "op": "transpose", "perm": [0, 3, 1, 2]}],
     None),
    # softmax over the last axis has no channels-first form here
    ([{"name": "t1", "op": "transpose", "perm": [0, 2, 3, 1]}, {"name": "sm", "op": "softmax", "axis": -1},
      {"name": "t2", "op": "transpose", "perm": [0, 3, 1, 2]}], None),
], ids=["not-inverse", "read-outside", "chain-output", "vector-add", "matmul-by-tensor", "softmax"])
def test_fold_channel_last_chain_leaves_what_it_cannot_fold(layers, outputs):
    graph = load(layers, shape=(4, 4, 4), **({"outputs": outputs} if outputs else {}))
    after = run(fold_channel_last_chain, graph)
    assert ops(after) == ops(graph)


# ---------------------------------------------------------------- fold_channel_scale
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("scale_shape", [(4, 1, 1), (1,)])
def test_fold_channel_scale_into_a_conv(bias, scale_shape):
    graph = load([conv("c", bias=bias), const("k", *scale_shape), {"name": "m", "op": "mul", "inputs": ["c", "k"]},
                  {"name": "r", "op": "relu"}])
    after = run(fold_channel_scale, graph)
    assert ops(after) == {"x": "input", "m": "conv2d", "r": "relu"}
    assert after.layer("m").merged == ("c",) and after.layer("m").attrs.bias == bias
    k = np.broadcast_to(graph.weights["k.value"].reshape(-1), (4,))
    np.testing.assert_allclose(after.weights["m.weight"], graph.weights["c.weight"] * k[:, None, None, None],
                               rtol=1e-6)
    if bias:
        np.testing.assert_allclose(after.weights["m.bias"], graph.weights["c.bias"] * k, rtol=1e-6)


@pytest.mark.parametrize("layers,outputs", [
    # a scale per column, not per channel
    ([conv("c"), const("k", 1, 1, 6), {"name": "m", "op": "mul", "inputs": ["c", "k"]}], None),
    # a scale that is computed, not constant
    ([conv("c"), {"name": "k", "op": "sigmoid", "inputs": ["x"]}, conv("k2", inputs=["k"]),
      {"name": "m", "op": "mul", "inputs": ["c", "k2"]}], None),
    # the conv is read twice
    ([conv("c"), const("k", 4, 1, 1), {"name": "m", "op": "mul", "inputs": ["c", "k"]},
      {"name": "t", "op": "add", "inputs": ["m", "c"]}], None),
    # the conv is an output
    ([conv("c"), const("k", 4, 1, 1), {"name": "m", "op": "mul", "inputs": ["c", "k"]}], ["c", "m"]),
], ids=["per-column", "computed", "two-readers", "conv-is-an-output"])
def test_fold_channel_scale_leaves_what_it_cannot_fold(layers, outputs):
    graph = load(layers, **({"outputs": outputs} if outputs else {}))
    after = run(fold_channel_scale, graph)
    assert ops(after) == ops(graph)
