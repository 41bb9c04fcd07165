"""The ONNX front end: each op mapping against onnxruntime on small models built with onnx.helper,
opset variants where attributes became inputs, constant folding, and the errors for bad files and models."""
import ast
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import compiler  # noqa: E402
from compiler.errors import ConvcWarning, ModelError  # noqa: E402
from conftest import ROOT  # noqa: E402

LATEST = onnx.defs.onnx_opset_version()
RTOL, ATOL = 1e-4, 1e-5


def make_model(nodes, in_shape, initializers=(), opset=LATEST, outputs=("y",), input_name="x",
               batch="N") -> onnx.ModelProto:
    """A model with one float input [batch, *in_shape]; `initializers` maps names to arrays."""
    inits = [numpy_helper.from_array(np.asarray(v), name) for name, v in dict(initializers).items()]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch, *in_shape])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 10)  # what onnxruntime reads
    return model


def save(model, tmp_path, name="model.onnx"):
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def run_onnxruntime(model, x, one_sample_at_a_time=False):
    """onnxruntime's outputs for batch x (a model or a path). one_sample_at_a_time: for models whose
    batch size is fixed at 1, run each sample on its own and stack the results."""
    source = str(model) if not isinstance(model, onnx.ModelProto) else model.SerializeToString()
    sess = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    if one_sample_at_a_time:
        outs = [sess.run(None, {name: x[i:i + 1]}) for i in range(len(x))]
        return [np.concatenate(parts) for parts in zip(*outs)]
    return sess.run(None, {name: x})


def check(model, tmp_path, batches=(1, 3), seed=0, one_sample_at_a_time=False):
    """Compile the model with convc and compare every output with onnxruntime on random batches."""
    path = save(model, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvcWarning)
        graph = compiler.load(path)
        lib = compiler.compile(graph)
    shape = graph.shape(graph.inputs[0])
    for n in batches:
        x = np.random.default_rng(seed + n).standard_normal((n, *shape)).astype(np.float32)
        got = lib.run({graph.inputs[0]: x})
        refs = run_onnxruntime(model, x, one_sample_at_a_time)
        assert len(refs) == len(graph.outputs)
        for name, ref in zip(graph.outputs, refs):
            np.testing.assert_allclose(got[name], ref, rtol=RTOL, atol=ATOL, err_msg=f"output {name}, N={n}")
    return graph


def rand(*shape, seed=1, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


# ---------------------------------------------------------------- Conv
@pytest.mark.parametrize("attrs", [
    {},
    {"pads": [1, 2, 0, 1], "strides": [2, 1]},
    {"dilations": [2, 2], "pads": [2, 2, 2, 2]},
    {"group": 2, "pads": [1, 1, 1, 1]},
    {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
    {"auto_pad": "SAME_LOWER", "strides": [2, 2]},
    {"auto_pad": "VALID", "strides": [2, 2]},
], ids=["default", "asym_pads_strides", "dilations", "group", "same_upper", "same_lower", "valid"])
def test_conv(tmp_path, attrs):
    w = rand(6, 4 // attrs.get("group", 1), 3, 3)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 3], **attrs)
    check(make_model([node], [4, 9, 10], {"w": w, "b": rand(6, seed=2)}), tmp_path)


def test_conv_depthwise_without_bias(tmp_path):
    node = helper.make_node("Conv", ["x", "w"], ["y"], group=4, pads=[1, 1, 1, 1])
    check(make_model([node], [4, 7, 7], {"w": rand(4, 1, 3, 3)}), tmp_path)


# ---------------------------------------------------------------- pools
@pytest.mark.parametrize("op,attrs", [
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2]}),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    ("MaxPool", {"kernel_shape": [2, 2], "pads": [1, 0, 0, 1], "dilations": [2, 2]}),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1}),
    ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 0}),
    ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    ("AveragePool", {"kernel_shape": [3, 2], "strides": [2, 2], "auto_pad": "SAME_LOWER"}),
])
def test_pool(tmp_path, op, attrs):
    check(make_model([helper.make_node(op, ["x"], ["y"], **attrs)], [3, 8, 9]), tmp_path)


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global_pool(tmp_path, op):
    check(make_model([helper.make_node(op, ["x"], ["y"])], [5, 4, 3]), tmp_path)


# ---------------------------------------------------------------- Gemm, MatMul
@pytest.mark.parametrize("attrs,c", [
    ({}, rand(5, seed=3)),
    ({"transB": 1, "alpha": 0.5, "beta": 2.0}, rand(1, 5, seed=3)),
    ({"beta": 0.5}, np.float32(1.5)),
    ({}, None),
])
def test_gemm(tmp_path, attrs, c):
    b = rand(5, 7) if attrs.get("transB") else rand(7, 5)
    inits = {"b": b} if c is None else {"b": b, "c": c}
    node = helper.make_node("Gemm", ["x", "b"] + ([] if c is None else ["c"]), ["y"], **attrs)
    check(make_model([node], [7], inits), tmp_path)


def test_matmul_with_constant_then_add(tmp_path):
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])]
    check(make_model(nodes, [6], {"w": rand(6, 4), "b": rand(4, seed=2)}), tmp_path)


# ---------------------------------------------------------------- normalization and activations
@pytest.mark.parametrize("opset", [7, 9, LATEST])
def test_batchnorm(tmp_path, opset):
    c = 4
    inits = {"s": rand(c, seed=2), "b": rand(c, seed=3), "m": rand(c, seed=4),
             "v": np.abs(rand(c, seed=5)) + 0.5}
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], epsilon=1e-3)
    check(make_model([node], [c, 5, 5], inits, opset=opset), tmp_path)


@pytest.mark.parametrize("op,attrs", [
    ("Relu", {}), ("Sigmoid", {}), ("Tanh", {}), ("LeakyRelu", {"alpha": 0.2}), ("LeakyRelu", {}),
])
def test_pointwise(tmp_path, op, attrs):
    check(make_model([helper.make_node(op, ["x"], ["y"], **attrs)], [3, 4, 4]), tmp_path)


# HardSwish, HardSigmoid, Gelu, Mish, Softplus, Elu, Selu, Exp, Log, Sqrt, Erf, Abs, Neg, Reciprocal
@pytest.mark.parametrize("op,attrs,opset", [
    ("HardSwish", {}, LATEST), ("HardSigmoid", {}, LATEST), ("HardSigmoid", {"alpha": 0.3, "beta": 0.6}, LATEST),
    ("Gelu", {}, 20), ("Gelu", {"approximate": "tanh"}, 20), ("Gelu", {"approximate": "none"}, LATEST),
    ("Mish", {}, LATEST), ("Softplus", {}, LATEST), ("Elu", {}, LATEST), ("Elu", {"alpha": 0.5}, LATEST),
    ("Selu", {}, LATEST), ("Selu", {"alpha": 2.0, "gamma": 3.0}, LATEST), ("Exp", {}, LATEST), ("Erf", {}, LATEST),
    ("Abs", {}, LATEST), ("Neg", {}, LATEST), ("Reciprocal", {}, LATEST),
])
def test_activations_and_unary_math(tmp_path, op, attrs, opset):
    graph = check(make_model([helper.make_node(op, ["x"], ["y"], **attrs)], [3, 4, 4], opset=opset), tmp_path)
    assert op != "Selu" or [layer.op for layer in graph.layers()][1:] == (["selu"] if not attrs else ["elu", "constant",
                                                                                                      "mul"])


@pytest.mark.parametrize("op", ["Log", "Sqrt"])
def test_log_and_sqrt_of_positive_values(tmp_path, op):
    nodes = [helper.make_node("Abs", ["x"], ["a"]), helper.make_node("Add", ["a", "one"], ["p"]),
             helper.make_node(op, ["p"], ["y"])]
    check(make_model(nodes, [3, 4, 4], {"one": np.float32(0.01)}), tmp_path)

@pytest.mark.parametrize("slope_shape", [(1,), (3, 1, 1), (3, 4, 4)], ids=["shared", "per_channel", "general"])
def test_prelu(tmp_path, slope_shape):
    node = helper.make_node("PRelu", ["x", "s"], ["y"])
    check(make_model([node], [3, 4, 4], {"s": rand(*slope_shape, seed=2)}), tmp_path)


@pytest.mark.parametrize("opset,lo,hi", [(7, -0.5, 0.7), (7, None, 1.0), (LATEST, -0.5, 0.7), (LATEST, 0.0, None),
                                         (LATEST, 0.0, 6.0)])
def test_clip(tmp_path, opset, lo, hi):
    if opset < 11:
        attrs = {k: v for k, v in (("min", lo), ("max", hi)) if v is not None}
        nodes, inits = [helper.make_node("Clip", ["x"], ["y"], **attrs)], {}
    else:
        inits = {k: np.float32(v) for k, v in (("lo", lo), ("hi", hi)) if v is not None}
        nodes = [helper.make_node("Clip", ["x", "lo" if lo is not None else "", "hi" if hi is not None else ""],
                                  ["y"])]
    check(make_model(nodes, [3, 4, 4], inits, opset=opset), tmp_path)


@pytest.mark.parametrize("opset,axis,shape", [
    (11, 1, [3, 4, 5]),   # before opset 13: over the flattening of axes 1..end
    (11, 2, [3, 4, 5]),
    (11, -1, [10]),
    (13, 1, [3, 4, 5]),   # opset 13+: one axis
    (LATEST, -1, [3, 4, 5]),
    (LATEST, 1, [10]),
])
def test_softmax(tmp_path, opset, axis, shape):
    check(make_model([helper.make_node("Softmax", ["x"], ["y"], axis=axis)], shape, opset=opset), tmp_path)


def test_lrn(tmp_path):
    nodes = [helper.make_node("LRN", ["x"], ["h"], size=3, alpha=1e-2, beta=0.75, bias=2.0),
             helper.make_node("LRN", ["h"], ["y"], size=5)]
    check(make_model(nodes, [6, 3, 3]), tmp_path)


def test_lrn_even_size_follows_the_onnx_definition(tmp_path):
    # onnxruntime rejects even sizes (and onnx's reference evaluator loops over the batch instead of the
    # channels), so the oracle is the operator spec's formula: channels [c − ⌊(size−1)/2⌋, c + ⌈(size−1)/2⌉].
    size, alpha, beta, bias = 4, 0.1, 0.75, 1.0
    model = make_model([helper.make_node("LRN", ["x"], ["y"], size=size, alpha=alpha)], [6, 2, 3])
    lib = compiler.compile(save(model, tmp_path))
    x = rand(2, 6, 2, 3, seed=3)
    ref = np.empty_like(x, dtype=np.float64)
    for c in range(6):
        lo, hi = max(0, c - (size - 1) // 2), min(5, c + -(-(size - 1) // 2))
        square_sum = (x[:, lo:hi + 1].astype(np.float64) ** 2).sum(axis=1)
        ref[:, c] = x[:, c] / (bias + alpha / size * square_sum) ** beta
    np.testing.assert_allclose(lib(x), ref, rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------- shapes and layout
def test_flatten_reshape_transpose(tmp_path):
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
             helper.make_node("Reshape", ["t", "shape"], ["r"]),
             helper.make_node("Flatten", ["r"], ["y"])]
    check(make_model(nodes, [2, 3, 4], {"shape": np.array([0, 4, -1], np.int64)}), tmp_path)


def test_reshape_with_the_exported_batch_size(tmp_path):
    # Exporters often bake the batch size they traced with into Reshape; it still means "the batch".
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"])]
    check(make_model(nodes, [2, 3, 4], {"shape": np.array([1, -1], np.int64)}, batch=1), tmp_path,
          one_sample_at_a_time=True)


def test_reshape_across_the_batch_is_an_error(tmp_path):
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["y"])]
    path = save(make_model(nodes, [2, 3], {"shape": np.array([-1], np.int64)}), tmp_path)
    with pytest.raises(ModelError, match=r"node 'y' \(Reshape\).*batch"):
        compiler.load(path)


# ---------------------------------------------------------------- element-wise and merging
@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("const_shape", [(3, 1, 1), (), (1, 3, 1, 1), (4,)], ids=["chan", "scalar", "4d", "row"])
def test_binary_with_constant(tmp_path, op, const_shape):
    c = rand(*const_shape, seed=2) if const_shape else np.float32(1.7)
    if op == "Div":
        c = np.abs(c) + 0.5
    nodes = [helper.make_node(op, ["c", "x"] if op == "Sub" else ["x", "c"], ["y"])]
    check(make_model(nodes, [3, 2, 4], {"c": c}), tmp_path)


def test_binary_between_activations(tmp_path):
    nodes = [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["x", "s"], ["m"]),
             helper.make_node("GlobalAveragePool", ["m"], ["g"]), helper.make_node("Mul", ["m", "g"], ["y"])]
    check(make_model(nodes, [3, 4, 4]), tmp_path)


def test_sum_and_concat(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Sigmoid", ["x"], ["s"]),
             helper.make_node("Sum", ["x", "r", "s", "c1", "c2"], ["t"]),
             helper.make_node("Concat", ["t", "r", "k"], ["u"], axis=1),
             helper.make_node("Concat", ["u", "u"], ["y"], axis=-1)]
    inits = {"c1": rand(3, 1, 1, seed=2), "c2": np.float32(0.5), "k": rand(1, 2, 4, 5, seed=3)}
    # The constant joined to every sample has ONNX batch size 1, so the reference runs one sample at a time.
    check(make_model(nodes, [3, 4, 5], inits, batch=1), tmp_path, one_sample_at_a_time=True)


# ---------------------------------------------------------------- Dropout, Identity, Pad
@pytest.mark.parametrize("opset", [7, LATEST])
def test_dropout_identity(tmp_path, opset):
    nodes = [helper.make_node("Dropout", ["x"], ["d"], **({"ratio": 0.3} if opset < 12 else {})),
             helper.make_node("Identity", ["d"], ["i"]), helper.make_node("Relu", ["i"], ["y"]),
             helper.make_node("Identity", ["i"], ["z"])]
    check(make_model(nodes, [6], opset=opset, outputs=("y", "z")), tmp_path)


@pytest.mark.parametrize("opset", [7, 11, LATEST])
def test_pad(tmp_path, opset):
    pads = [0, 0, 1, 2, 0, 1, 0, 3]
    if opset < 11:
        nodes, inits = [helper.make_node("Pad", ["x"], ["y"], pads=pads, value=0.5)], {}
    elif opset < 18:
        nodes = [helper.make_node("Pad", ["x", "p", "v"], ["y"])]
        inits = {"p": np.array(pads, np.int64), "v": np.float32(0.5)}
    else:  # opset 18: pads over selected axes
        nodes = [helper.make_node("Pad", ["x", "p", "v", "axes"], ["y"])]
        inits = {"p": np.array([1, 2, 1, 0, 3, 0], np.int64), "v": np.float32(0.5),
                 "axes": np.array([2, 3, 1], np.int64)}
    check(make_model(nodes, [2, 3, 4], inits, opset=opset), tmp_path)


# ---------------------------------------------------------------- constant folding
def test_torch_style_flatten_is_folded(tmp_path):
    # x.view(x.size(0), -1) as older exporters write it: Shape -> Gather -> Unsqueeze -> Concat -> Reshape.
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
             helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["y"])]
    inits = {"zero": np.array(0, np.int64), "axes": np.array([0], np.int64), "minus1": np.array([-1], np.int64)}
    graph = check(make_model(nodes, [2, 3, 4], inits), tmp_path)
    assert [layer.op for layer in graph.layers()] == ["input", "flatten"]


@pytest.mark.parametrize("opset", [9, 11, LATEST])
def test_constant_subgraphs_are_folded(tmp_path, opset):
    # A weight built from ConstantOfShape and an initializer, a bias from a Constant node and Unsqueeze.
    unsq = (helper.make_node("Unsqueeze", ["bias1d"], ["bias"], axes=[0]) if opset < 13 else
            helper.make_node("Unsqueeze", ["bias1d", "ax"], ["bias"]))
    nodes = [helper.make_node("ConstantOfShape", ["wshape"], ["ones"],
                              value=numpy_helper.from_array(np.array([0.5], np.float32))),
             helper.make_node("Mul", ["ones", "wscale"], ["w"]),
             helper.make_node("Constant", [], ["bias1d"], value=numpy_helper.from_array(rand(2, seed=4))),
             unsq,
             helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Flatten", ["c"], ["f"]),
             helper.make_node("Gemm", ["f", "g", "bias"], ["y"], transB=1)]
    inits = {"wshape": np.array([3, 2, 3, 3], np.int64), "wscale": rand(3, 1, 1, 1, seed=5),
             "g": rand(2, 3 * 4 * 4, seed=6), "ax": np.array([0], np.int64)}
    graph = check(make_model(nodes, [2, 4, 4], inits, opset=opset), tmp_path)
    assert [layer.op for layer in graph.layers()] == ["input", "conv2d", "flatten", "dense"]


# ---------------------------------------------------------------- errors
def test_every_unsupported_op_is_listed_at_once(tmp_path):
    nodes = [helper.make_node("Hardmax", ["x"], ["a"], name="hm_1"), helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Hardmax", ["b"], ["c"], name="hm_2"),
             helper.make_node("LpNormalization", ["c"], ["y"], name="up")]
    path = save(make_model(nodes, [2, 3, 3]), tmp_path)
    with pytest.raises(ModelError) as err:
        compiler.load(path)
    message = str(err.value)
    assert str(path) in message
    for part in ("Hardmax", "'hm_1'", "'hm_2'", "LpNormalization", "'up'"):
        assert part in message
    assert "Relu" not in message


@pytest.mark.parametrize("content", [b"", b"not a protobuf at all \xff\xfe", None], ids=["empty", "garbage",
                                                                                          "truncated"])
def test_malformed_files_name_the_path(tmp_path, content):
    if content is None:
        good = make_model([helper.make_node("Relu", ["x"], ["y"])], [3]).SerializeToString()
        content = good[: len(good) // 2]
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="bad.onnx"):
        compiler.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="nothere.onnx"):
        compiler.load(tmp_path / "nothere.onnx")


def compile_whole(model, tmp_path, x):
    """A model that reads across its batch axis: it imports as one whole tensor of its fixed shapes, and its
    compiled result must match onnxruntime's on exactly those shapes."""
    graph = compiler.load(save(model, tmp_path))
    assert not graph.batched and graph.shape(graph.inputs[0]) == x.shape
    compiled = compiler.compile(graph)
    np.testing.assert_allclose(compiled(x), run_onnxruntime(model, x)[0], rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match="exactly"):  # the shapes are fixed: another batch size is an error
        compiled(np.concatenate([x, x]))
    return graph


def test_an_input_with_no_batch_axis_compiles_as_a_whole_tensor(tmp_path):
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", LATEST)])
    model.ir_version = min(model.ir_version, 10)
    compile_whole(model, tmp_path, rand(5))


def test_a_constant_that_varies_per_sample_compiles_as_a_whole_tensor(tmp_path):
    nodes = [helper.make_node("Add", ["x", "c"], ["y"], name="add_it")]
    compile_whole(make_model(nodes, [4], {"c": rand(2, 4)}, batch=2), tmp_path, rand(2, 4, seed=3))


@pytest.mark.parametrize("node, shape", [
    (helper.make_node("Softmax", ["x"], ["y"], axis=0), [3, 4]),
    (helper.make_node("Concat", ["x", "x"], ["y"], axis=0), [3, 4]),
    (helper.make_node("Transpose", ["x"], ["y"], perm=[1, 0, 2]), [3, 4, 2]),
    (helper.make_node("Flatten", ["x"], ["y"], axis=2), [3, 4, 2]),
], ids=["softmax-axis-0", "concat-axis-0", "transpose-batch", "flatten-axis-2"])
def test_ops_across_the_batch_axis_compile_as_a_whole_tensor(node, shape, tmp_path):
    compile_whole(make_model([node], shape[1:], batch=shape[0]), tmp_path, rand(*shape, seed=4))


def test_gemm_with_trans_a_and_a_full_bias(tmp_path):
    nodes = [helper.make_node("Gemm", ["x", "w", "c"], ["y"], transA=1, alpha=0.5, beta=2.0)]
    model = make_model(nodes, [3], {"w": rand(4, 5, seed=2), "c": rand(3, 5, seed=3)}, batch=4)
    compile_whole(model, tmp_path, rand(4, 3, seed=5))


def test_a_symbolic_batch_with_an_op_across_it_names_the_fix(tmp_path):
    nodes = [helper.make_node("Softmax", ["x"], ["y"], axis=0, name="sm")]
    path = save(make_model(nodes, [4]), tmp_path)  # batch "N"
    with pytest.raises(ModelError, match=r"node 'sm' \(Softmax\).*batch axis.*fixed batch size"):
        compiler.load(path)


def _external_model(tmp_path, location):
    model = make_model([helper.make_node("Mul", ["x", "w"], ["y"])], [3], {"w": rand(3)})
    onnx.save(model, str(tmp_path / "m.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location=location, size_threshold=0)
    return tmp_path / "m.onnx", model


def test_external_data_inside_the_folder(tmp_path):
    path, _ = _external_model(tmp_path, "weights.bin")
    lib = compiler.compile(path)
    x = rand(2, 3, seed=7)
    np.testing.assert_allclose(lib(x), run_onnxruntime(path, x)[0], rtol=RTOL, atol=ATOL)


def test_external_data_outside_the_folder_needs_permission(tmp_path):
    inner = tmp_path / "inner"
    inner.mkdir()
    path, _ = _external_model(inner, "weights.bin")
    proto = onnx.load(str(path), load_external_data=False)
    for t in proto.graph.initializer:
        for entry in t.external_data:
            if entry.key == "location":
                entry.value = "../weights.bin"
    (inner / "weights.bin").rename(tmp_path / "weights.bin")
    onnx.save(proto, str(path))
    with pytest.raises(ModelError, match="outside the model's folder"):
        compiler.load(path)
    assert compiler.load(path, allow_outside_paths=True).layers()


# ---------------------------------------------------------------- names, convert
def test_onnx_names_are_kept_and_never_reach_c_raw(tmp_path):
    nodes = [helper.make_node("Relu", ["in/put;*/"], ["out */ \"x\""], name="relu */ evil")]
    model = make_model(nodes, [4], outputs=('out */ "x"',), input_name="in/put;*/")
    graph = check(model, tmp_path)
    assert graph.inputs == ["in/put;*/"] and graph.outputs == ['out */ "x"']
    source = compiler.generate_c(graph).code
    assert "*/ evil" not in source and 'out */ "x"' not in source


def test_convert_writes_an_editable_description(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2],
                                                                       strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("Gemm", ["f", "g"], ["y"], transB=1)]
    model = make_model(nodes, [2, 4, 4], {"w": rand(3, 2, 3, 3), "b": rand(3, seed=2), "g": rand(5, 12, seed=3)})
    path = save(model, tmp_path)
    out = tmp_path / "conv" / "model.yaml"
    out.parent.mkdir()
    result = subprocess.run([sys.executable, "-m", "compiler", "convert", str(path), "-o", str(out)], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert out.is_file() and (out.parent / "model.npz").is_file()
    lib = compiler.compile(out)
    x = rand(3, 2, 4, 4, seed=9)
    np.testing.assert_allclose(lib(x), run_onnxruntime(model, x)[0], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("op", ["ReduceMean", "ReduceMax"])
@pytest.mark.parametrize("opset,keepdims", [(13, 0), (13, 1), (LATEST, 0)])
def test_reduce_over_the_spatial_axes_is_global_pooling(tmp_path, op, opset, keepdims):
    if opset >= 18:
        nodes = [helper.make_node(op, ["x", "axes"], ["y"], keepdims=keepdims)]
        inits = {"axes": np.array([-1, 2], np.int64)}
    else:
        nodes, inits = [helper.make_node(op, ["x"], ["y"], axes=[2, 3], keepdims=keepdims)], {}
    check(make_model(nodes, [3, 4, 5], inits, opset=opset), tmp_path)


def test_reduce_over_the_batch_axis_is_an_error(tmp_path):
    path = save(make_model([helper.make_node("ReduceMean", ["x"], ["y"], axes=[0, 1], name="rm")], [3, 4, 5],
                           opset=13), tmp_path)
    with pytest.raises(ModelError, match=r"node 'rm' \(ReduceMean\).*'axes' = 0 names the batch axis"):
        compiler.load(path)


def small_cnn(opset: int) -> onnx.ModelProto:
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["n"]),
             helper.make_node("Relu", ["n"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Reshape", ["p", "shape"], ["f"]),
             helper.make_node("Gemm", ["f", "g", "gb"], ["z"], transB=1),
             helper.make_node("Softmax", ["z"], ["y"])]
    inits = {"w": rand(4, 2, 3, 3), "b": rand(4, seed=2), "s": rand(4, seed=3), "bb": rand(4, seed=4),
             "m": rand(4, seed=5), "v": np.abs(rand(4, seed=6)) + 0.5, "shape": np.array([0, -1], np.int64),
             "g": rand(5, 4 * 3 * 3, seed=7), "gb": rand(5, seed=8)}
    return make_model(nodes, [2, 6, 6], inits, opset=opset)


@pytest.mark.parametrize("opset", sorted({7, 9, 11, 13, 18, LATEST}))
def test_the_same_cnn_in_every_opset(tmp_path, opset):
    # onnx's converter rewrites the opset-7 model (attributes that became inputs, ...); the reference is
    # onnxruntime on the opset-7 original, whose semantics every version keeps.
    from onnx import version_converter
    original = small_cnn(7)
    model = version_converter.convert_version(original, opset) if opset != 7 else original
    path = save(model, tmp_path)
    lib = compiler.compile(path)
    x = rand(3, 2, 6, 6, seed=11)
    np.testing.assert_allclose(lib(x), run_onnxruntime(original, x)[0], rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------- 1-D windows, Squeeze/Unsqueeze, Max/Min
@pytest.mark.parametrize("node", [
    helper.make_node("Conv", ["x", "w1", "b1"], ["y"], pads=[2, 1], strides=[2], dilations=[2]),
    helper.make_node("Conv", ["x", "w1"], ["y"], auto_pad="SAME_UPPER"),
    helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3], strides=[2], pads=[1, 1], ceil_mode=1),
    helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3], pads=[1, 0], count_include_pad=0),
], ids=["conv", "conv_same", "maxpool", "avgpool"])
def test_1d_windows_run_as_2d(tmp_path, node):
    check(make_model([node], [4, 11], {"w1": rand(5, 4, 3), "b1": rand(5, seed=2)}), tmp_path)


@pytest.mark.parametrize("opset", [11, LATEST])
def test_squeeze_unsqueeze_of_activations(tmp_path, opset):
    if opset < 13:
        nodes = [helper.make_node("Unsqueeze", ["x"], ["u"], axes=[2, -1]),
                 helper.make_node("Relu", ["u"], ["r"]), helper.make_node("Squeeze", ["r"], ["y"], axes=[2, 4])]
        inits = {}
    else:
        nodes = [helper.make_node("Unsqueeze", ["x", "ua"], ["u"]),
                 helper.make_node("Relu", ["u"], ["r"]), helper.make_node("Squeeze", ["r", "sa"], ["y"])]
        inits = {"ua": np.array([2, -1], np.int64), "sa": np.array([2, 4], np.int64)}
    check(make_model(nodes, [3, 5], inits, opset=opset), tmp_path)


@pytest.mark.parametrize("op", ["Max", "Min"])
def test_max_min(tmp_path, op):
    nodes = [helper.make_node("Tanh", ["x"], ["t"]), helper.make_node(op, ["x", "t", "c"], ["y"])]
    check(make_model(nodes, [3, 4], {"c": rand(4, seed=2) * 0.1}), tmp_path)


def test_several_inputs_each_carry_the_batch(tmp_path):
    nodes = [helper.make_node("Add", ["x", "y"], ["a"]), helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Concat", ["r", "y"], ["z"], axis=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 3]),
                                           helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 3])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("r", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    lib = compiler.compile(save(model, tmp_path))
    x, y = rand(4, 2, 3, seed=1), rand(4, 2, 3, seed=2)
    got = lib.run({"x": x, "y": y})
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ref_z, ref_r = sess.run(None, {"x": x, "y": y})
    np.testing.assert_allclose(got["z"], ref_z, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got["r"], ref_r, rtol=RTOL, atol=ATOL)


def test_convc_compile_takes_an_onnx_file(tmp_path):
    import runtime
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])]
    model = make_model(nodes, [2, 5, 5], {"w": rand(3, 2, 3, 3)})
    path = save(model, tmp_path)
    out = tmp_path / "m.so"
    result = subprocess.run([sys.executable, "-m", "compiler", "compile", str(path), "-o", str(out)], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    x = rand(2, 2, 5, 5, seed=4)
    np.testing.assert_allclose(runtime.load(out)(x), run_onnxruntime(model, x)[0], rtol=RTOL, atol=ATOL)


def test_convc_reports_unsupported_ops_on_one_line(tmp_path):
    nodes = [helper.make_node("Hardmax", ["x"], ["h1"], name="h1"), helper.make_node("Hardmax", ["h1"], ["h2"], name="h2"),
             helper.make_node("Det", ["h2"], ["y"], name="d")]
    path = save(make_model(nodes, [3, 3]), tmp_path)
    result = subprocess.run([sys.executable, "-m", "compiler", "compile", str(path)], cwd=tmp_path,
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2
    # a summary first (type ×count), then the nodes
    assert "unsupported: Det ×1, Hardmax ×2 (nodes Det: 'd'; Hardmax: 'h1', 'h2')" in result.stderr


# ---------------------------------------------------------------- LayerNormalization, GroupNormalization,
# InstanceNormalization, Resize, Upsample, ConvTranspose
@pytest.mark.parametrize("axis,shape,with_bias", [(-1, [3, 4, 5], True), (1, [3, 4, 5], False), (2, [3, 4, 5], True),
                                                  (-2, [6, 7], True), (1, [8], True)])
def test_layernorm(tmp_path, axis, shape, with_bias):
    normalized = shape[axis - 1 if axis > 0 else axis:]
    inits = {"s": rand(*normalized, seed=2)}
    if with_bias:
        inits["b"] = rand(*normalized, seed=3)
    node = helper.make_node("LayerNormalization", ["x", "s", "b"] if with_bias else ["x", "s"], ["y"], axis=axis,
                            epsilon=1e-3)  # (an empty name for the missing B crashes onnxruntime 1.32)
    check(make_model([node], shape, inits, opset=17), tmp_path)


def test_layernorm_mean_and_inv_std_dev_outputs(tmp_path):
    node = helper.make_node("LayerNormalization", ["x", "s"], ["y", "mean", "inv_std"], axis=2)
    model = make_model([node], [3, 4, 5], {"s": rand(4, 5, seed=2)}, opset=17, outputs=("y", "mean", "inv_std"))
    graph = check(model, tmp_path)
    assert graph.shape(graph.outputs[1]) == graph.shape(graph.outputs[2]) == (3, 1, 1)


@pytest.mark.parametrize("dynamo_style", [False, True], ids=["torchscript", "dynamo"])
def test_convnext_layernorm2d_becomes_one_layer(tmp_path, dynamo_style):
    """ConvNeXt's LayerNorm2d as both exporters write it (Transpose -> LayerNormalization -> Transpose; the
    dynamo exporter at opset 20 adds stash_type): one layernorm over the channels after the passes."""
    from compiler.passes import optimize
    extra = {"stash_type": 1} if dynamo_style else {}
    nodes = [helper.make_node("Conv", ["x", "w", "cb"], ["c"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Transpose", ["c"], ["nhwc"], perm=[0, 2, 3, 1]),
             helper.make_node("LayerNormalization", ["nhwc", "s", "b"], ["ln"], axis=-1, epsilon=1e-6, **extra),
             helper.make_node("Transpose", ["ln"], ["y"], perm=[0, 3, 1, 2])]
    inits = {"w": rand(16, 3, 2, 2), "cb": rand(16, seed=4), "s": rand(16, seed=2), "b": rand(16, seed=3)}
    graph = check(make_model(nodes, [3, 8, 10], inits, opset=20 if dynamo_style else 17), tmp_path)
    layers = optimize(graph, 2).layers()
    assert [layer.op for layer in layers] == ["input", "conv2d", "layernorm"]
    assert (layers[-1].attrs.axis, layers[-1].attrs.last_axis, layers[-1].name) == (1, 1, "y")


@pytest.mark.parametrize("opset,per_group", [(18, True), (21, False)])
def test_groupnorm(tmp_path, opset, per_group):
    """Opset 18 gives scale and bias per group, opset 21 per channel."""
    n = 2 if per_group else 6
    node = helper.make_node("GroupNormalization", ["x", "s", "b"], ["y"], num_groups=2, epsilon=1e-3)
    model = make_model([node], [6, 4, 5], {"s": rand(n, seed=2), "b": rand(n, seed=3)}, opset=opset)
    try:
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as e:  # older onnxruntimes lack one of the two forms
        pytest.skip(f"onnxruntime cannot run GroupNormalization-{opset}: {e}")
    check(model, tmp_path)


def test_instancenorm(tmp_path):
    node = helper.make_node("InstanceNormalization", ["x", "s", "b"], ["y"], epsilon=1e-4)
    check(make_model([node], [3, 4, 5], {"s": rand(3, seed=2), "b": rand(3, seed=3)}), tmp_path)


@pytest.mark.parametrize("attrs,scales,sizes,shape", [
    ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
     [1, 1, 2, 2], None, [3, 4, 5]),                                                        # torch's nearest
    ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
     [1, 1, 2.2, 1.7], None, [3, 4, 5]),
    ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
     None, [1, 3, 7, 3], [3, 4, 5]),
    ({"mode": "nearest"}, [1, 1, 1.5, 0.6], None, [2, 4, 5]),                               # ONNX's defaults
    ({"mode": "nearest", "coordinate_transformation_mode": "half_pixel", "nearest_mode": "round_prefer_ceil"},
     [1, 1, 1.5, 2.5], None, [2, 4, 5]),                                                    # torch's nearest-exact
    ({"mode": "nearest", "coordinate_transformation_mode": "align_corners", "nearest_mode": "ceil"},
     None, [1, 2, 6, 9], [2, 4, 5]),
    ({"mode": "linear", "coordinate_transformation_mode": "half_pixel"}, [1, 1, 1.7, 0.6], None, [3, 4, 5]),
    ({"mode": "linear", "coordinate_transformation_mode": "half_pixel"}, None, [1, 3, 9, 7], [3, 4, 5]),
    ({"mode": "linear", "coordinate_transformation_mode": "align_corners"}, [1, 1, 2, 2], None, [3, 4, 5]),
    ({"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}, None, [1, 3, 1, 7], [3, 4, 5]),
    ({"mode": "linear", "coordinate_transformation_mode": "half_pixel_symmetric"}, [1, 1, 1.3, 0.7], None,
     [2, 4, 6]),
    ({"mode": "linear", "coordinate_transformation_mode": "asymmetric"}, [1, 1, 2.5], None, [3, 5]),   # N×C×L
], ids=["nearest-2x", "nearest-fraction", "nearest-sizes", "nearest-defaults", "nearest-exact",
        "nearest-align-corners-ceil", "linear-scales", "linear-sizes", "linear-align-corners",
        "linear-pytorch-half-pixel-to-1", "linear-half-pixel-symmetric", "linear-1d"])
def test_resize(tmp_path, attrs, scales, sizes, shape):
    inits = {"scales": np.array(scales, np.float32)} if scales is not None else {"sizes": np.array(sizes, np.int64)}
    inputs = ["x", "", "scales"] if scales is not None else ["x", "", "", "sizes"]
    node = helper.make_node("Resize", inputs, ["y"], **attrs)
    check(make_model([node], shape, inits, opset=19), tmp_path, batches=(1,) if sizes is not None else (1, 3))


@pytest.mark.parametrize("policy", ["not_larger", "not_smaller"])
def test_resize_axes_and_keep_aspect_ratio(tmp_path, policy):
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="linear", axes=[3, 2],
                            keep_aspect_ratio_policy=policy)
    check(make_model([node], [2, 4, 6], {"sizes": np.array([9, 7], np.int64)}, opset=19), tmp_path)


@pytest.mark.parametrize("op,opset,scales", [("Upsample", 9, [1, 1, 2, 3]), ("Upsample", 7, [1, 1, 2, 1.5]),
                                             ("Resize", 10, [1, 1, 0.5, 0.7]), ("Resize", 10, [1, 1, 2, 2])])
def test_upsample_and_resize_10(tmp_path, op, opset, scales):
    mode = {"mode": "nearest"}
    if opset == 7:
        node = helper.make_node(op, ["x"], ["y"], scales=scales, **mode)
        inits = {}
    else:
        node = helper.make_node(op, ["x", "scales"], ["y"], **mode)
        inits = {"scales": np.array(scales, np.float32)}
    check(make_model([node], [2, 4, 5], inits, opset=opset), tmp_path)


@pytest.mark.parametrize("attrs,group", [
    ({}, 1),
    ({"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]}, 1),      # torch's upsampling layout
    ({"strides": [2, 3], "pads": [0, 1, 2, 0], "dilations": [2, 1]}, 1),
    ({"strides": [2, 2], "pads": [1, 0, 1, 0]}, 2),
    ({"strides": [2, 2], "auto_pad": "SAME_UPPER"}, 1),
    ({"strides": [2, 2], "auto_pad": "SAME_LOWER"}, 1),
    ({"strides": [2, 2], "output_shape": [8, 9]}, 1),
    ({"strides": [3, 2], "output_shape": [10, 10], "auto_pad": "SAME_UPPER"}, 1),
], ids=["default", "torch-upsampling", "asym-pads-dilations", "group", "same-upper", "same-lower", "output-shape",
        "output-shape-same-upper"])
def test_conv_transpose(tmp_path, attrs, group):
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], kernel_shape=[3, 3], group=group, **attrs)
    check(make_model([node], [4, 4, 5], {"w": rand(4, 6 // group, 3, 3), "b": rand(6, seed=2)}), tmp_path)


def test_conv_transpose_1d_without_bias(tmp_path):
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2], pads=[1, 0], output_padding=[1])
    check(make_model([node], [3, 6], {"w": rand(3, 2, 4)}), tmp_path)


# ---------------------------------------------------------------- Slice, Split, Gather, reductions, MatMul (issue 13)
BIG = np.iinfo(np.int64).max


@pytest.mark.parametrize("opset,starts,ends,axes,steps", [
    (9, [1, 0], [3, -1], [1, 3], None),                        # attributes
    (LATEST, [-1, 0], [-100, BIG], [3, -2], [-2, 3]),          # inputs; negative step, clamped ends
    (13, [0, 1], [BIG, 3], None, None),                        # default axes: the whole batch, then 1:3
    (13, [5, -3], [-BIG, 1], [1, 2], [-1, -1]),                # backwards to the start
], ids=["attributes", "steps", "default_axes", "backwards"])
def test_slice(tmp_path, opset, starts, ends, axes, steps):
    if opset < 10:
        nodes, inits = [helper.make_node("Slice", ["x"], ["y"], starts=starts, ends=ends, axes=axes)], {}
    else:
        inits = {"s": np.array(starts, np.int64), "e": np.array(ends, np.int64)}
        names = ["x", "s", "e"]
        for key, value in (("a", axes), ("t", steps)):
            names.append(key if value is not None else "")
            if value is not None:
                inits[key] = np.array(value, np.int64)
        nodes = [helper.make_node("Slice", names, ["y"])]
    check(make_model(nodes, [6, 5, 7], inits, opset=opset), tmp_path)


def test_slice_of_the_batch_axis_is_an_error(tmp_path):
    node = helper.make_node("Slice", ["x", "s", "e"], ["y"], name="sl")
    path = save(make_model([node], [3, 4], {"s": np.array([1], np.int64), "e": np.array([2], np.int64)}), tmp_path)
    with pytest.raises(ModelError, match=r"node 'sl' \(Slice\).*'axes' = 0 names the batch axis"):
        compiler.load(path)


@pytest.mark.parametrize("opset,attrs,split,read", [
    (11, {"axis": 1, "split": [1, 3]}, None, ("a", "b")),
    (13, {"axis": 2}, [2, 6, 1], ("a", "c")),               # the middle output is never read
    (18, {"axis": -1, "num_outputs": 3}, None, ("a", "b", "c")),  # 2, 2, 1 as torch.chunk
    (13, {"axis": 1}, None, ("a", "b")),                    # equal parts
], ids=["attribute", "input_unused_output", "num_outputs", "equal"])
def test_split(tmp_path, opset, attrs, split, read):
    pieces = len(split or attrs.get("split", [])) or attrs.get("num_outputs", 2)
    node = helper.make_node("Split", ["x", "split"] if split else ["x"], ["a", "b", "c"][:pieces], **attrs)
    inits = {"split": np.array(split, np.int64)} if split else {}
    relu = [helper.make_node("Relu", [o], [f"{o}_out"]) for o in read]
    graph = check(make_model([node] + relu, [4, 9, 5], inits, opset=opset, outputs=[f"{o}_out" for o in read]),
                  tmp_path)
    assert {graph.layer(o).op for o in read} == {"split" if split or "split" in attrs else "chunk"}
    assert ("b" in graph.nx.nodes) == ("b" in read)  # an output nobody reads is not computed


@pytest.mark.parametrize("op,opset,axes,keepdims", [
    ("ReduceSum", 13, [1], 0),          # axes as an input from opset 13 for ReduceSum
    ("ReduceMax", 13, [1, -1], 1),
    ("ReduceMean", LATEST, [-3], 0),
    ("ReduceSum", 11, [2], 1),
    ("ReduceMax", LATEST, [3, 1], 0),
])
def test_reduce(tmp_path, op, opset, axes, keepdims):
    if opset >= 18 or (op == "ReduceSum" and opset >= 13):
        nodes, inits = [helper.make_node(op, ["x", "axes"], ["y"], keepdims=keepdims)], {"axes": np.array(axes)}
    else:
        nodes, inits = [helper.make_node(op, ["x"], ["y"], axes=axes, keepdims=keepdims)], {}
    check(make_model(nodes, [3, 4, 5], inits, opset=opset), tmp_path)


def test_reduce_with_empty_axes_and_noop_is_the_identity(tmp_path):
    nodes = [helper.make_node("ReduceSum", ["x", "axes"], ["r"], noop_with_empty_axes=1),
             helper.make_node("Relu", ["r"], ["y"])]
    graph = check(make_model(nodes, [3, 4], {"axes": np.array([], np.int64)}, opset=13), tmp_path)
    assert [layer.op for layer in graph.layers()] == ["input", "relu"]


@pytest.mark.parametrize("op", ["ReduceMean", "ReduceMax"])
def test_spatial_reduce_keeps_the_global_pool_kernel(tmp_path, op):
    nodes = [helper.make_node(op, ["x"], ["y"], axes=[2, 3], keepdims=0)]
    path = save(make_model(nodes, [16, 5, 6], opset=13), tmp_path)
    plan = compiler.plan_kernels(path)
    assert [c.kernel for c in plan.choices.values()] == ["global_pool"]


@pytest.mark.parametrize("indices,axis", [(np.array(2), 1), (np.array([-1, 0, 3]), -1),
                                          (np.array([[0, 2], [1, 1], [3, 0]]), 2)], ids=["scalar", "list", "2d"])
def test_gather(tmp_path, indices, axis):
    node = helper.make_node("Gather", ["x", "i"], ["y"], axis=axis)
    check(make_model([node], [3, 4, 5], {"i": indices.astype(np.int64)}), tmp_path)


@pytest.mark.parametrize("in_shape,left,right", [
    ([5, 6], "x", rand(6, 4, seed=2)),
    ([5, 6], rand(4, 5, seed=2), "x"),
    ([2, 3, 4], "x", rand(2, 4, 5, seed=2)),    # a batch of constant matrices against the sample's
    ([3, 4], "x", rand(4, seed=2)),              # a constant column vector
    ([3, 4], rand(3, seed=2), "x"),              # a constant row vector
    ([3, 4, 4], "x", "t"),                       # two run-time operands
], ids=["right", "left", "batched", "column", "row", "runtime"])
def test_matmul(tmp_path, in_shape, left, right):
    inits = {name: v for name, v in (("l", left), ("r", right)) if not isinstance(v, str)}
    names = [v if isinstance(v, str) else k for k, v in (("l", left), ("r", right))]
    nodes = [helper.make_node("Tanh", ["x"], ["t"]), helper.make_node("MatMul", names, ["y"])]
    check(make_model(nodes, in_shape, inits), tmp_path)


def test_matmul_of_a_vector_by_a_constant_matrix_is_dense(tmp_path):
    graph = check(make_model([helper.make_node("MatMul", ["x", "w"], ["y"])], [6], {"w": rand(6, 4)}), tmp_path)
    assert [layer.op for layer in graph.layers()] == ["input", "dense"]


@pytest.mark.parametrize("in_shape,inputs,w,needle", [
    ([4], ["w", "x"], rand(3, 2), "sums over the batch axis"),
    ([4], ["x", "w"], rand(2, 4, 5), "among the rows"),
], ids=["batch_contracted", "batch_in_rows"])
def test_matmul_that_moves_the_batch_axis_is_an_error(tmp_path, in_shape, inputs, w, needle):
    path = save(make_model([helper.make_node("MatMul", inputs, ["y"], name="mm")], in_shape, {"w": w}), tmp_path)
    with pytest.raises(ModelError, match=rf"node 'mm' \(MatMul\).*{needle}"):
        compiler.load(path)


def test_channel_shuffle_pattern_becomes_one_layer(tmp_path):
    # ShuffleNet's x.view(n, g, c/g, h, w).transpose(1, 2).reshape(n, c, h, w), as torch.onnx exports it.
    nodes = [helper.make_node("Reshape", ["x", "grouped"], ["g"]),
             helper.make_node("Transpose", ["g"], ["t"], perm=[0, 2, 1, 3, 4]),
             helper.make_node("Reshape", ["t", "back"], ["y"])]
    inits = {"grouped": np.array([-1, 2, 3, 4, 5], np.int64), "back": np.array([-1, 6, 4, 5], np.int64)}
    path = save(make_model(nodes, [6, 4, 5], inits), tmp_path)
    check(make_model(nodes, [6, 4, 5], inits), tmp_path)
    assert [(c.op, c.sources) for c in compiler.plan_kernels(path).choices.values()] == [
        ("channel_shuffle", ("g", "t", "y"))]


# ---------------------------------------------------------------- the registry declares what is imported
def test_handlers_and_declared_onnx_types_agree():
    from compiler.frontends.onnx import HANDLERS
    from compiler.ops import ONNX_TYPES, onnx_types_of
    assert set(HANDLERS) == set(ONNX_TYPES)
    assert ONNX_TYPES["Conv"] == "conv2d" and ONNX_TYPES["Sum"] == "add" and ONNX_TYPES["MatMul"] == "matmul"
    assert onnx_types_of("global_avgpool") == ("GlobalAveragePool",)
    assert onnx_types_of("fused_conv2d") == ()  # a subclass of conv2d made by passes: it does not inherit Conv


def test_a_mismatch_between_handlers_and_declarations_is_an_error():
    from compiler.frontends.onnx.handlers import check_handlers
    handler = object()
    check_handlers({"Relu": handler}, {"Relu": "relu"})
    with pytest.raises(RuntimeError, match=r"'Gelu' is declared by op 'gelu' but has no handler"):
        check_handlers({"Relu": handler}, {"Relu": "relu", "Gelu": "gelu"})
    with pytest.raises(RuntimeError, match=r"'Elu' has a handler but no op declares it"):
        check_handlers({"Relu": handler, "Elu": handler}, {"Relu": "relu"})


def test_an_op_declaring_an_onnx_type_without_a_handler_fails_the_import():
    # In a fresh interpreter: registering an op here would change the registry the other tests see.
    script = ("from compiler.ops import register\nfrom compiler.ops.base import Op\n\n"
              "@register\nclass Shrink(Op):\n    name = 'shrink_for_test'\n    onnx_types = ('ShrinkForTest',)\n\n"
              "import compiler.frontends.onnx\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode != 0
    assert "'ShrinkForTest' is declared by op 'shrink_for_test' but has no handler" in result.stderr


def test_two_ops_cannot_declare_one_onnx_type():
    from compiler.ops import REGISTRY, register
    from compiler.ops.base import Op

    class Rectifier(Op):
        name = "rectifier_for_test"
        onnx_types = ("Relu",)

    class FusedThing(Op):
        name = "fused_thing_for_test"
        internal = True
        onnx_types = ("Elu",)

    with pytest.raises(RuntimeError, match=r"'Relu' is declared by both 'relu' and 'rectifier_for_test'"):
        register(Rectifier)
    with pytest.raises(RuntimeError, match=r"'fused_thing_for_test' is internal"):
        register(FusedThing)
    assert "rectifier_for_test" not in REGISTRY and "fused_thing_for_test" not in REGISTRY


def _parametrized_strings(function: ast.FunctionDef, argname: str) -> set[str]:
    """The string values a @pytest.mark.parametrize decorator of `function` gives to `argname`."""
    found = set()
    for deco in function.decorator_list:
        if not (isinstance(deco, ast.Call) and ast.unparse(deco.func) == "pytest.mark.parametrize"):
            continue
        names = [n.strip() for n in deco.args[0].value.split(",")]
        if argname not in names or not isinstance(deco.args[1], (ast.List, ast.Tuple)):
            continue
        k = names.index(argname)
        for row in deco.args[1].elts:
            value = row.elts[k] if len(names) > 1 and isinstance(row, ast.Tuple) else row
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                found.add(value.value)
    return found


def onnx_types_built_by_this_file() -> set[str]:
    """The op types of the nodes this file's tests build: helper.make_node's first argument, a literal or a
    parameter that the test's parametrize decorator binds to literals."""
    tree = ast.parse(Path(__file__).read_text())
    types = set()
    for function in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)] + [tree]:
        for call in ast.walk(function):
            if not (isinstance(call, ast.Call) and ast.unparse(call.func) == "helper.make_node" and call.args):
                continue
            first = call.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                types.add(first.value)
            elif isinstance(first, ast.Name) and isinstance(function, ast.FunctionDef):
                types |= _parametrized_strings(function, first.id)
    return types


def onnx_types_run_by_the_backend_suite() -> set[str]:
    """The op types in the models of the ONNX backend tests that tests/test_onnx_backend.py runs."""
    with warnings.catch_warnings():  # onnx generates its node cases on import, overflowing casts on purpose
        warnings.simplefilter("ignore", RuntimeWarning)
        from onnx.backend.test.loader import load_model_tests

        import test_onnx_backend as suite
        cases = [case for kind in ("node", "real", "simple", "pytorch-converted", "pytorch-operator")
                 for case in load_model_tests(kind=kind)]
    types = set()
    for case in cases:
        if suite.in_scope(case.name + "_cpu") and case.name not in suite.EXCLUDED:
            model = case.model if case.model is not None else onnx.load(os.path.join(case.model_dir, "model.onnx"))
            types.update(node.op_type for node in model.graph.node)
    return types


def test_every_declared_onnx_type_is_imported_by_a_test():
    from compiler.ops import ONNX_TYPES
    here, backend = onnx_types_built_by_this_file(), onnx_types_run_by_the_backend_suite()
    # Both scans find what they should (a literal, a parametrized name, a backend family), so a miss is real.
    assert {"Conv", "ReduceMean", "Max", "GlobalMaxPool", "LRN"} <= here
    assert {"Conv", "Gemm", "Squeeze"} <= backend
    missing = sorted(set(ONNX_TYPES) - here - backend)
    assert not missing, (f"ONNX op types an op declares (onnx_types) but no test imports: {missing}; add a case to "
                         "tests/test_onnx_frontend.py or a family to tests/test_onnx_backend.py")


# ---------------------------------------------------------------- Cast, CastLike, Pow
def test_casts_to_float32_make_no_layer(tmp_path):
    nodes = [helper.make_node("Cast", ["x"], ["c"], to=TensorProto.FLOAT), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("CastLike", ["r", "like"], ["p"]), helper.make_node("Pow", ["p", "e"], ["y"])]
    graph = check(make_model(nodes, [3, 4], {"like": np.float32(0), "e": np.float32(2.0)}), tmp_path)
    assert [layer.op for layer in graph.layers()] == ["input", "relu", "constant", "pow"]


@pytest.mark.parametrize("node,inits", [
    (helper.make_node("Cast", ["x"], ["y"], to=TensorProto.INT32, name="c"), {}),
    (helper.make_node("CastLike", ["x", "like"], ["y"], name="c"), {"like": np.int64(0)}),
], ids=["Cast", "CastLike"])
def test_casts_to_other_types_are_refused(tmp_path, node, inits):
    path = save(make_model([node], [3], inits), tmp_path)
    with pytest.raises(ModelError, match=rf"node 'c' \({node.op_type}\).*casts to int.*computes in float32"):
        compiler.load(path)
