"""Bad uses of the tensor ops (broadcasting, transpose, reshape, pad, concat/softmax axes, prelu, lrn, constant)
get a ModelError/ShapeError that names the layer, the attribute and, for shapes, the numbers."""
import numpy as np
import pytest

import compiler
from compiler import ModelError, ShapeError
from conftest import model_dict


def error(desc, kind=ModelError) -> str:
    with pytest.raises(kind) as e:
        compiler.load(desc)
    return str(e.value)


# ---------------------------------------------------------------- broadcasting
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "max", "min", "pow"])
def test_broadcast_mismatch_names_the_layer_both_inputs_and_shapes(op):
    msg = error(model_dict([{"name": "k", "op": "constant", "shape": [4, 1, 1]},
                            {"name": "bad", "op": op, "inputs": ["x", "k"]}]), ShapeError)
    assert f"layer 'bad' ({op})" in msg
    assert "'x' (3×8×8)" in msg and "'k' (4×1×1)" in msg and "3 and 4" in msg and "axis -3" in msg


def test_broadcast_mismatch_in_a_later_input_names_the_two_that_clash():
    msg = error(model_dict([{"name": "k", "op": "constant", "shape": [1, 8, 1]},
                            {"name": "j", "op": "constant", "shape": [5]},
                            {"name": "s", "op": "add", "inputs": ["x", "k", "j"]}]), ShapeError)
    assert "'x' (3×8×8)" in msg and "'j' (5)" in msg and "8 and 5" in msg and "'k'" not in msg


def test_broadcast_lower_rank_aligns_at_the_right():
    # (8,) fits 3×8×8 on the last axis; (3,) does not, although it matches the channel count.
    compiler.load(model_dict([{"name": "k", "op": "constant", "shape": [8]}, {"op": "add", "inputs": ["x", "k"]}]))
    msg = error(model_dict([{"name": "k", "op": "constant", "shape": [3]}, {"op": "mul", "inputs": ["x", "k"]}]),
                ShapeError)
    assert "8 and 3" in msg


@pytest.mark.parametrize("op,n", [("div", 3), ("pow", 1), ("add", 1), ("max", 1)])
def test_input_counts(op, n):
    msg = error(model_dict([{"name": "r", "op": "relu"}, {"name": "b", "op": op, "inputs": ["r"] * n}]))
    assert "layer 'b'" in msg and ("takes 2 input(s)" in msg or "two or more" in msg)


# ---------------------------------------------------------------- transpose
@pytest.mark.parametrize("perm", [[0, 1], [0, 1, 1, 2], [0, 1, 2, 4], [0, 2, 1, 3, 4], [-1, 0, 1, 2]])
def test_transpose_perm_must_be_a_permutation_of_the_axes(perm):
    msg = error(model_dict([{"name": "t", "op": "transpose", "perm": perm}]), ShapeError)
    assert "layer 't' (transpose)" in msg and "'perm'" in msg and str(perm) in msg and "N×3×8×8" in msg


def test_transpose_cannot_move_the_batch_axis():
    msg = error(model_dict([{"name": "t", "op": "transpose", "perm": [1, 0, 2, 3]}]), ShapeError)
    assert "layer 't' (transpose)" in msg and "moves the batch axis" in msg


@pytest.mark.parametrize("perm", [[], "0,2,1", [0, 1.5, 2], [True, 0, 1]])
def test_transpose_perm_must_be_a_list_of_ints(perm):
    msg = error(model_dict([{"name": "t", "op": "transpose", "perm": perm}]))
    assert "layer 't' (transpose)" in msg and "'perm'" in msg


def test_transpose_needs_perm():
    assert "missing required attribute 'perm'" in error(model_dict([{"name": "t", "op": "transpose"}]))


# ---------------------------------------------------------------- reshape
def test_reshape_count_mismatch_shows_both_shapes_and_counts():
    msg = error(model_dict([{"name": "r", "op": "reshape", "shape": [3, 60]}]), ShapeError)
    assert "layer 'r' (reshape)" in msg and "'shape'" in msg
    assert "3×8×8" in msg and "192" in msg and "3×60" in msg and "180" in msg


def test_reshape_inferred_axis_must_divide():
    msg = error(model_dict([{"name": "r", "op": "reshape", "shape": [5, -1]}]), ShapeError)
    assert "192" in msg and "not a multiple of 5" in msg


@pytest.mark.parametrize("shape,needle", [([-1, -1], "at most one -1"), ([0, 192], "integers >= 1"),
                                          ([], "non-empty"), ([3, -2, 8], "integers >= 1"), (192, "list")])
def test_reshape_shape_attribute(shape, needle):
    msg = error(model_dict([{"name": "r", "op": "reshape", "shape": shape}]))
    assert "layer 'r' (reshape)" in msg and "'shape'" in msg and needle in msg


# ---------------------------------------------------------------- pad
def test_negative_pads_are_an_error_naming_the_attribute():
    msg = error(model_dict([{"name": "p", "op": "pad", "pads": [0, -1, 0, 0, 1, 0]}]))
    assert "layer 'p' (pad)" in msg and "'pads'" in msg and ">= 0" in msg and "cropping" in msg


@pytest.mark.parametrize("pads,needle", [([0, 1, 0, 0], "2·3 = 6"), ([1, 1, 1], "even length"),
                                         ([], "list of integers"), ([0, 1.0, 0, 0, 1, 0], "list of integers")])
def test_pads_length_and_type(pads, needle):
    msg = error(model_dict([{"name": "p", "op": "pad", "pads": pads}]))
    assert "layer 'p' (pad)" in msg and "'pads'" in msg and needle in msg


def test_pad_value_must_be_finite():
    msg = error(model_dict([{"name": "p", "op": "pad", "pads": [0] * 6, "value": float("nan")}]))
    assert "'value'" in msg and "finite" in msg


def test_pad_has_no_mode_attribute():
    msg = error(model_dict([{"name": "p", "op": "pad", "pads": [0] * 6, "mode": "reflect"}]))
    assert "'mode'" in msg and "pads" in msg and "value" in msg


# ---------------------------------------------------------------- concat and softmax axes
@pytest.mark.parametrize("op,axis", [("concat", 4), ("concat", -5), ("softmax", 4), ("softmax", -5)])
def test_axis_out_of_range(op, axis):
    inputs = {"inputs": ["x", "x"]} if op == "concat" else {}
    msg = error(model_dict([{"name": "a", "op": op, "axis": axis, **inputs}]), ShapeError)
    assert f"layer 'a' ({op})" in msg and f"'axis' = {axis}" in msg and "rank-4" in msg and "0..3" in msg


@pytest.mark.parametrize("op,axis", [("concat", 0), ("concat", -4), ("softmax", 0), ("softmax", -4)])
def test_an_axis_naming_the_batch_is_refused(op, axis):
    """Axes count as in PyTorch: 0 is the batch, which these ops cannot act across in a batched model."""
    inputs = {"inputs": ["x", "x"]} if op == "concat" else {}
    msg = error(model_dict([{"name": "a", "op": op, "axis": axis, **inputs}]), ShapeError)
    assert f"layer 'a' ({op})" in msg and f"'axis' = {axis}" in msg and "names the batch axis" in msg


def test_concat_other_axes_must_match():
    msg = error(model_dict([{"name": "t", "op": "transpose", "perm": [0, 2, 1, 3]},
                            {"name": "cat", "op": "concat", "axis": 3, "inputs": ["x", "t"]}], shape=(3, 4, 5)),
                ShapeError)
    assert "layer 'cat' (concat)" in msg and "axis 3" in msg and "3×4×5" in msg and "4×3×5" in msg


def test_concat_ranks_must_match():
    msg = error(model_dict([{"name": "f", "op": "flatten"},
                            {"name": "cat", "op": "concat", "inputs": ["x", "f"]}], shape=(2, 3, 4)), ShapeError)
    assert "'x' is 2×3×4" in msg and "'f' is 24" in msg


def test_axis_must_be_an_integer():
    assert "'axis' must be an integer" in error(model_dict([{"op": "softmax", "axis": 1.0}]))


# ---------------------------------------------------------------- prelu, lrn
def test_prelu_num_parameters_is_one_or_the_channels():
    msg = error(model_dict([{"name": "p", "op": "prelu", "num_parameters": 4}]))
    assert "layer 'p' (prelu)" in msg and "'num_parameters' = 4" in msg and "channels (3)" in msg


def test_prelu_weight_shape_is_checked(tmp_path):
    np.savez(tmp_path / "w.npz", **{"p.weight": np.ones(2, np.float32)})
    (tmp_path / "m.yaml").write_text("input: {name: x, shape: [3, 4, 4]}\nweights: w.npz\n"
                                     "layers: [{name: p, op: prelu, num_parameters: 3}]\n")
    msg = error(tmp_path / "m.yaml")
    assert "'p.weight' has shape [2], expected [3]" in msg


@pytest.mark.parametrize("attrs,needle", [({"size": 0}, "'size' must be an integer >= 1"),
                                          ({"size": 3, "bias": 0.0}, "'bias' must be > 0"),
                                          ({"size": 3, "beta": "x"}, "'beta' must be a finite number"),
                                          ({}, "missing required attribute 'size'")])
def test_lrn_attributes(attrs, needle):
    msg = error(model_dict([{"name": "n", "op": "lrn", **attrs}]))
    assert "layer 'n' (lrn)" in msg and needle in msg


# ---------------------------------------------------------------- constant
@pytest.mark.parametrize("shape,needle", [(None, "missing required attribute 'shape'"),
                                          ([3, 0], "integer(s) >= 1"), ([], "at least 1"), (3, "list")])
def test_constant_shape_attribute(shape, needle):
    layer = {"name": "k", "op": "constant"} if shape is None else {"name": "k", "op": "constant", "shape": shape}
    msg = error(model_dict([layer, {"op": "add", "inputs": ["x", "k"]}]))
    assert "layer 'k' (constant)" in msg and needle in msg


def test_constant_takes_no_inputs():
    msg = error(model_dict([{"name": "k", "op": "constant", "shape": [1], "inputs": ["x"]}]))
    assert "layer 'k' (constant)" in msg and "takes 0 input(s)" in msg


def test_constant_value_must_have_the_declared_shape(tmp_path):
    np.savez(tmp_path / "w.npz", **{"k.value": np.ones((3, 1), np.float32)})
    (tmp_path / "m.yaml").write_text("input: {name: x, shape: [3, 4, 4]}\nweights: w.npz\n"
                                     "layers: [{name: k, op: constant, shape: [3, 1, 1]}, "
                                     "{op: add, inputs: [x, k]}]\n")
    msg = error(tmp_path / "m.yaml")
    assert "layer 'k' (constant)" in msg and "'k.value' has shape [3, 1], expected [3, 1, 1]" in msg


def test_constant_value_must_be_finite(tmp_path):
    np.savez(tmp_path / "w.npz", **{"k.value": np.array([np.inf], np.float32)})
    (tmp_path / "m.yaml").write_text("input: {name: x, shape: [2]}\nweights: w.npz\n"
                                     "layers: [{name: k, op: constant, shape: [1]}, {op: add, inputs: [x, k]}]\n")
    assert "'k.value' contains NaN or infinity" in error(tmp_path / "m.yaml")


# ---------------------------------------------------------------- inputs of any rank
def test_input_shape_may_have_any_rank_but_not_be_empty():
    assert compiler.load(model_dict([{"op": "relu"}], shape=(4, 5))).shape("relu_1") == (4, 5)
    assert compiler.load(model_dict([{"op": "relu"}], shape=(2, 3, 4, 5))).shape("relu_1") == (2, 3, 4, 5)
    for shape in ([], [3, 0], [2.5]):
        msg = error({"input": {"name": "x", "shape": shape}, "layers": [{"op": "relu"}]})
        assert "positive integers" in msg


def test_spatial_ops_still_need_chw():
    msg = error(model_dict([{"name": "c", "op": "conv2d", "filters": 2, "kernel": 1}], shape=(4, 5)), ShapeError)
    assert "layer 'c' (conv2d)" in msg and "C×H×W" in msg and "4×5" in msg


# ---------------------------------------------------------------- hardswish, hardsigmoid, silu, gelu, mish, softplus,
# elu, selu; exp, log, sqrt, erf, abs, neg, reciprocal
@pytest.mark.parametrize("op,attrs,needle", [
    ("gelu", {"approximate": "erf"}, "'approximate' must be one of 'none', 'tanh', got 'erf'"),
    ("gelu", {"approximate": True}, "'approximate' must be one of"),
    ("softplus", {"beta": 0}, "'beta' must not be 0"),
    ("softplus", {"threshold": float("inf")}, "'threshold' must be a finite number"),
    ("elu", {"alpha": "1"}, "'alpha' must be a finite number"),
    ("hardsigmoid", {"alpha": float("nan")}, "'alpha' must be a finite number"),
    ("hardsigmoid", {"beta": None}, "'beta' must be a finite number"),
    ("selu", {"alpha": 1.0}, "unknown attribute(s) 'alpha'; this op takes: none"),
    ("silu", {"inplace": True}, "unknown attribute(s) 'inplace'"),
    ("hardswish", {"alpha": 0.2}, "unknown attribute(s) 'alpha'"),
    ("mish", {"beta": 1.0}, "unknown attribute(s) 'beta'"),
    ("exp", {"base": 2.0}, "unknown attribute(s) 'base'"),
    ("log", {"base": 10.0}, "unknown attribute(s) 'base'"),
    ("sqrt", {"eps": 0.0}, "unknown attribute(s) 'eps'"),
    ("erf", {"approximate": "none"}, "unknown attribute(s) 'approximate'"),
    ("abs", {"x": 1}, "unknown attribute(s) 'x'"),
    ("neg", {"x": 1}, "unknown attribute(s) 'x'"),
    ("reciprocal", {"eps": 1e-6}, "unknown attribute(s) 'eps'"),
])
def test_activation_and_unary_attributes(op, attrs, needle):
    msg = error(model_dict([{"name": "a", "op": op, **attrs}]))
    assert f"layer 'a' ({op})" in msg and needle in msg


@pytest.mark.parametrize("op", ["silu", "gelu", "exp", "neg"])
def test_unary_ops_take_one_input(op):
    msg = error(model_dict([{"name": "r", "op": "relu"}, {"name": "b", "op": op, "inputs": ["x", "r"]}]))
    assert f"layer 'b' ({op})" in msg and "takes 1 input(s)" in msg
# ---------------------------------------------------------------- layernorm, groupnorm, instancenorm, upsample,
# conv_transpose2d
def test_layernorm_last_axis_before_axis():
    msg = error(model_dict([{"name": "n", "op": "layernorm", "axis": 3, "last_axis": 2}]), ShapeError)
    assert "layer 'n' (layernorm)" in msg and "'last_axis' = 2" in msg and "'axis' = 3" in msg


@pytest.mark.parametrize("attrs,needle", [({"axis": 0}, "'axis' = 0 names the batch axis"),
                                          ({"axis": -4}, "'axis' = -4 names the batch axis"),
                                          ({"axis": 1, "last_axis": 4}, "'last_axis' = 4 is out of range"),
                                          ({"eps": 0}, "'eps' must be > 0")])
def test_layernorm_axes_and_eps(attrs, needle):
    kind = ModelError if "eps" in attrs else ShapeError
    msg = error(model_dict([{"name": "n", "op": "layernorm", **attrs}]), kind)
    assert "layer 'n' (layernorm)" in msg and needle in msg


def test_layernorm_weight_has_the_normalized_shape(tmp_path):
    np.savez(tmp_path / "w.npz", **{"n.weight": np.ones(8, np.float32), "n.bias": np.zeros(8, np.float32)})
    (tmp_path / "m.yaml").write_text("input: {name: x, shape: [3, 4, 8]}\nweights: w.npz\n"
                                     "layers: [{name: n, op: layernorm, axis: 1, last_axis: 1}]\n")
    assert "'n.weight' has shape [8], expected [3]" in error(tmp_path / "m.yaml")


@pytest.mark.parametrize("attrs,needle", [({"num_groups": 4}, "'num_groups' = 4 must divide the input channels (3"),
                                          ({}, "missing required attribute 'num_groups'"),
                                          ({"num_groups": 0}, "'num_groups' must be an integer >= 1")])
def test_groupnorm_groups(attrs, needle):
    msg = error(model_dict([{"name": "g", "op": "groupnorm", **attrs}]))
    assert "layer 'g' (groupnorm)" in msg and needle in msg


def test_instancenorm_needs_positions():
    msg = error(model_dict([{"name": "i", "op": "instancenorm"}], shape=(5,)), ShapeError)
    assert "layer 'i' (instancenorm)" in msg and "C×H×W" in msg and "got shape 5" in msg


@pytest.mark.parametrize("attrs,needle", [
    ({}, "give attribute 'scale_factor' or 'size'"),
    ({"scale_factor": 0.1}, "'scale_factor' [0.1, 0.1] gives an empty output: ⌊8·0.1⌋ × ⌊8·0.1⌋ = 0×0"),
    ({"scale_factor": -2}, "'scale_factor' must be > 0"),
    ({"scale_factor": [1, 2, 3]}, "'scale_factor' must be a number or [sh, sw]"),
    ({"size": [0, 4]}, "'size' must be an integer >= 1"),
    ({"size": 4, "mode": "bicubic"}, "'mode' must be one of nearest, bilinear"),
    ({"size": 4, "coordinate_transformation_mode": "tf_crop_and_resize"},
     "'coordinate_transformation_mode' must be one of asymmetric, align_corners"),
    ({"size": 4, "nearest_mode": "round"}, "'nearest_mode' must be one of floor, ceil"),
])
def test_upsample_attributes(attrs, needle):
    msg = error(model_dict([{"name": "u", "op": "upsample", **attrs}]))
    assert "layer 'u' (upsample)" in msg and needle in msg


def test_upsample_needs_chw():
    msg = error(model_dict([{"name": "u", "op": "upsample", "scale_factor": 2}], shape=(4, 5)), ShapeError)
    assert "layer 'u' (upsample)" in msg and "C×H×W" in msg


def test_conv_transpose_output_size_formula_with_its_numbers():
    """out = (in − 1)·S − 2P + D·(F − 1) + output_padding + 1, shown with the layer's numbers."""
    msg = error(model_dict([{"name": "t", "op": "conv_transpose2d", "filters": 2, "kernel": 3, "padding": [3, 0]}],
                           shape=(3, 2, 5)), ShapeError)
    assert "layer 't' (conv_transpose2d)" in msg and "'padding'" in msg
    assert "(in − 1)·S − 2P + D·(F − 1) + output_padding + 1" in msg
    assert "output height (in − 1)·S − 2P + D·(F − 1) + output_padding + 1 = (2 − 1)·1 − 2·3 + 1·(3 − 1) + 0 + 1 = -2 ≤ 0" in msg


@pytest.mark.parametrize("attrs,needle", [
    ({"filters": 4, "kernel": 3, "padding": "same"}, '"same" is not supported for conv_transpose2d'),
    ({"filters": 4, "kernel": 3, "groups": 2}, "'groups' = 2 must divide both the input channels (3)"),
    ({"filters": 4, "kernel": 3, "output_padding": -1}, "'output_padding' must be an integer >= 0"),
    ({"kernel": 3}, "missing required attribute 'filters'"),
])
def test_conv_transpose_attributes(attrs, needle):
    msg = error(model_dict([{"name": "t", "op": "conv_transpose2d", **attrs}]))
    assert "layer 't' (conv_transpose2d)" in msg and needle in msg


def test_conv_transpose_weight_is_in_torch_layout(tmp_path):
    np.savez(tmp_path / "w.npz", **{"t.weight": np.ones((4, 3, 3, 3), np.float32), "t.bias": np.ones(4, np.float32)})
    (tmp_path / "m.yaml").write_text("input: {name: x, shape: [3, 4, 4]}\nweights: w.npz\n"
                                     "layers: [{name: t, op: conv_transpose2d, filters: 4, kernel: 3}]\n")
    assert "'t.weight' has shape [4, 3, 3, 3], expected [3, 4, 3, 3]" in error(tmp_path / "m.yaml")
# ---------------------------------------------------------------- slice, split, chunk, gather, channel_shuffle,
# squeeze, unsqueeze, reductions, matmul (issue 13)
@pytest.mark.parametrize("attrs,needle", [
    ({"axes": [1, 2], "starts": [0], "ends": [1, 2]}, "'starts' has 1 value(s) but 'axes' [1, 2] names 2"),
    ({"axes": [2, -2], "starts": [0, 1], "ends": [1, 2]}, "'axes' [2, -2] names axis 2 twice"),
    ({"axes": [2], "starts": [5], "ends": [2]}, "'starts' 5, 'ends' 2, 'steps' 1 select nothing of axis 2 (size 8)"),
    ({"axes": [3], "starts": [0], "ends": [8], "steps": [0]}, "'steps' must not contain 0"),
    ({"axes": [0], "starts": [0], "ends": [1]}, "'axes' = 0 names the batch axis"),
    ({"axes": [4], "starts": [0], "ends": [1]}, "'axes' = 4 is out of range for a rank-4 tensor"),
    ({"axes": [1], "starts": 0, "ends": [1]}, "'starts' must be a non-empty list of integers"),
    ({"starts": [0], "ends": [1]}, "missing required attribute 'axes'"),
])
def test_slice_attributes(attrs, needle):
    msg = error(model_dict([{"name": "s", "op": "slice", **attrs}]), (ModelError, ShapeError))
    assert "layer 's' (slice)" in msg and needle in msg


@pytest.mark.parametrize("layer,needle", [
    ({"op": "split", "split_size_or_sections": [1, 1], "index": 0}, "[1, 1] adds up to 1 + 1 = 2, but axis 1 has size 3"),
    ({"op": "split", "split_size_or_sections": 2, "index": 2},
     "'index' = 2, but split_size_or_sections 2 cuts axis 1 (size 3) into 2 piece(s) [2, 1]; index is 0..1"),
    ({"op": "split", "split_size_or_sections": 0, "index": 0}, "must be an integer >= 1"),
    ({"op": "split", "split_size_or_sections": [3, 0], "index": 1}, "piece 1 of [3, 0] is empty"),
    ({"op": "split", "split_size_or_sections": 1}, "missing required attribute 'index'"),
    ({"op": "chunk", "chunks": 6, "index": 5, "axis": 2},  # as torch.chunk: fewer pieces than chunks
     "'index' = 5, but chunks 6 of ceil(8/6) = 2 cuts axis 2 (size 8) into 4 piece(s) [2, 2, 2, 2]"),
    ({"op": "chunk", "chunks": 3, "index": 2, "axis": -1, "inputs": ["p"]},
     "chunks 3 of ceil(4/3) = 2 cuts axis -1 (size 4) into 2 piece(s) [2, 2]"),
    ({"op": "chunk", "chunks": 0, "index": 0}, "'chunks' must be an integer >= 1"),
    ({"op": "chunk", "chunks": 2, "index": 0, "axis": 0}, "'axis' = 0 names the batch axis"),
])
def test_split_and_chunk_pieces(layer, needle):
    pool = {"name": "p", "op": "maxpool2d", "kernel": 2}
    msg = error(model_dict([pool, {"name": "s", "inputs": ["x"], **layer}]), (ModelError, ShapeError))
    assert f"layer 's' ({layer['op']})" in msg and needle in msg


@pytest.mark.parametrize("attrs,shape,needle", [
    ({"indices": [0, 3]}, (3, 8, 8), "'indices' has 3, out of range for axis 1 of size 3 (valid: -3..2)"),
    ({"indices": -9, "axis": 2}, (3, 8, 8), "'indices' has -9, out of range for axis 2 of size 8"),
    ({"indices": 1}, (5,), "one index removes axis 1, the only per-sample axis of 5"),
    ({"indices": [0], "axis": 0}, (3, 8, 8), "'axis' = 0 names the batch axis"),
    ({"indices": [0.5]}, (3, 8, 8), "'indices' must be a non-empty list of integers"),
])
def test_gather_indices(attrs, shape, needle):
    msg = error(model_dict([{"name": "g", "op": "gather", **attrs}], shape=shape), (ModelError, ShapeError))
    assert "layer 'g' (gather)" in msg and needle in msg


def test_channel_shuffle_groups_must_divide_the_channels():
    msg = error(model_dict([{"name": "cs", "op": "channel_shuffle", "groups": 2}]), ShapeError)
    assert "layer 'cs' (channel_shuffle)" in msg and "'groups' = 2 does not divide the 3 channels of 3×8×8" in msg
    assert "3 % 2 = 1" in msg


@pytest.mark.parametrize("layer,shape,needle", [
    ({"op": "squeeze"}, (1, 1), "squeezing 1×1 leaves no per-sample axis"),
    ({"op": "squeeze", "axes": [0]}, (1, 4), "'axes' = 0 names the batch axis"),
    ({"op": "squeeze", "axes": [3]}, (1, 4), "'axes' = 3 is out of range for a rank-3 tensor"),
    ({"op": "unsqueeze", "axes": [1, -4]}, (2, 4), "'axes' [1, -4] names an output axis twice"),
    ({"op": "unsqueeze", "axes": [0]}, (2, 4), "'axes' = 0 names the batch axis"),
    ({"op": "unsqueeze", "axes": [5]}, (2, 4), "'axes' = 5 is out of range for a rank-4 tensor"),
    ({"op": "unsqueeze"}, (2, 4), "missing required attribute 'axes'"),
])
def test_squeeze_unsqueeze_axes(layer, shape, needle):
    msg = error(model_dict([{"name": "q", **layer}], shape=shape), (ModelError, ShapeError))
    assert f"layer 'q' ({layer['op']})" in msg and needle in msg


@pytest.mark.parametrize("op", ["reduce_mean", "reduce_max", "reduce_sum"])
@pytest.mark.parametrize("attrs,needle", [
    ({"axes": [2, -2]}, "'axes' [2, -2] names an axis twice (the input has 4 axes)"),
    ({"axes": [0, 1]}, "'axes' = 0 names the batch axis"),
    ({"axes": [1, 2, 3]}, "reducing every per-sample axis of 3×8×8 without 'keepdims' leaves no per-sample axis"),
    ({"axes": [1], "keepdims": 1}, "'keepdims' must be true or false"),
    ({"axes": []}, "'axes' must be a non-empty list of integers"),
    ({}, "missing required attribute 'axes'"),
])
def test_reduce_axes(op, attrs, needle):
    msg = error(model_dict([{"name": "r", "op": op, **attrs}]), (ModelError, ShapeError))
    assert f"layer 'r' ({op})" in msg and needle in msg


@pytest.mark.parametrize("shape,k,needle", [
    ((3, 8, 8), [4, 2], "cannot multiply input 'x' (3×8×8) by input 'k' (4×2): the first has 8 columns, the second 4 rows"),
    ((8,), [8], "the product of two vectors (8 and 8) is one number per sample"),
    ((3, 8, 8), [4, 8, 1], "the batch axes of input 'x' (3×8×8) and input 'k' (4×8×1) do not broadcast: 3 against 4"),
])
def test_matmul_shapes(shape, k, needle):
    layers = [{"name": "k", "op": "constant", "shape": k}, {"name": "m", "op": "matmul", "inputs": ["x", "k"]}]
    msg = error(model_dict(layers, shape=shape), ShapeError)
    assert "layer 'm' (matmul)" in msg and needle in msg


def test_matmul_takes_two_inputs():
    assert "takes 2 input(s)" in error(model_dict([{"name": "m", "op": "matmul"}]))
