"""ONNX's own backend test suite (onnx.backend.test.BackendTest) run against convc, for the operator families
convc supports. Node test data comes from the installed onnx package; nothing is vendored.

Every test that cannot pass is excluded by name below, with the reason.
"""
import re
import warnings

import pytest

onnx = pytest.importorskip("onnx")
import onnx.backend.test  # noqa: E402

from compiler.errors import ConvcWarning  # noqa: E402
from compiler.onnx_backend import ConvcBackend  # noqa: E402

# The in-scope operator families: a test belongs to the first family whose pattern matches its name.
# Node tests are generated from onnx's test cases; the pytorch-converted/-operator models ship with onnx.
FAMILIES = {
    "Conv": r"test_(basic_conv_with(out)?_padding|conv_with_|Conv[12]d|operator_conv_)",
    "MaxPool": r"test_(maxpool_|MaxPool[12]d|operator_maxpool_)",
    "AveragePool": r"test_(averagepool_|AvgPool[12]d)",
    "GlobalAveragePool": r"test_globalaveragepool",
    "GlobalMaxPool": r"test_globalmaxpool",
    "Gemm": r"test_(gemm_|Linear|operator_addmm_)",
    "MatMul": r"test_(matmul_|operator_mm_)",
    "BatchNormalization": r"test_(batchnorm_|BatchNorm[12]d)",
    "Relu": r"test_(relu_|ReLU_|single_relu_model_)",
    "LeakyRelu": r"test_(leakyrelu|LeakyReLU)",
    "PRelu": r"test_(prelu_|PReLU_)",
    "Clip": r"test_(clip_|operator_clip_)",
    "Sigmoid": r"test_(sigmoid_|Sigmoid_)",
    "Tanh": r"test_(tanh_|Tanh_)",
    "Softmax": r"test_(softmax_(?!cross)|Softmax_)",
    "Flatten": r"test_(flatten_|operator_flatten_)",
    "Reshape": r"test_(reshape_|operator_view_)",
    "Transpose": r"test_(transpose_|operator_permute2_)",
    "Add": r"test_(add_|operator_add)",
    "Sum": r"test_sum_(example|one_input|two_inputs)_",
    "Mul": r"test_mul_",
    "Sub": r"test_sub_",
    "Div": r"test_div_",
    "Concat": r"test_(concat_|operator_concat2_)",
    "Dropout": r"test_(dropout_|training_dropout)",
    "Identity": r"test_identity_",
    "Pad": r"test_(constant_pad|ConstantPad2d|ZeroPad2d|operator_pad_)",
    "LRN": r"test_lrn_",
    # slicing and reductions (issue 13)
    "Slice": r"test_(slice|operator_index)",
    "Split": r"test_(split_(?!to_sequence)|operator_chunk)",
    "Squeeze": r"test_squeeze_",
    "Unsqueeze": r"test_unsqueeze_",
    "ReduceMean": r"test_(reduce_mean_|operator_reduced_mean)",
    "ReduceMax": r"test_reduce_max_",
    "ReduceSum": r"test_(reduce_sum_(?!square)|operator_reduced_sum)",
    "Gather": r"test_gather_(?!elements)",
}

# name (without the _cpu suffix) -> why it cannot pass. Keep one line each.
EXCLUDED = {
    "test_add_int16": "integer tensors: convc computes in float32",
    "test_add_int8": "integer tensors: convc computes in float32",
    "test_add_uint16": "integer tensors: convc computes in float32",
    "test_add_uint32": "integer tensors: convc computes in float32",
    "test_add_uint64": "integer tensors: convc computes in float32",
    "test_add_uint8": "integer tensors: convc computes in float32",
    "test_averagepool_2d_dilations": "AveragePool dilations: convc's avgpool2d has no dilation",
    "test_averagepool_3d_default": "3-D window: convc pools and convolves over 1-D and 2-D maps only",
    "test_averagepool_3d_dilations_large_count_include_pad_is_0_ceil_mode_is_False": "3-D window: convc pools and convolves over 1-D and 2-D maps only",
    "test_averagepool_3d_dilations_large_count_include_pad_is_0_ceil_mode_is_True": "3-D window: convc pools and convolves over 1-D and 2-D maps only",
    "test_averagepool_3d_dilations_large_count_include_pad_is_1_ceil_mode_is_False": "3-D window: convc pools and convolves over 1-D and 2-D maps only",
    "test_averagepool_3d_dilations_large_count_include_pad_is_1_ceil_mode_is_True": "3-D window: convc pools and convolves over 1-D and 2-D maps only",
    "test_averagepool_3d_dilations_small": "3-D window: convc pools and convolves over 1-D and 2-D maps only",
    "test_batchnorm_epsilon_training_mode": "training-mode BatchNormalization",
    "test_batchnorm_example_training_mode": "training-mode BatchNormalization",
    "test_clip_default_inbounds": "a rank-1 input has no per-sample axes (its only axis is the batch)",
    "test_clip_default_inbounds_expanded": "expanded into Exp/ReduceMax/ReduceSum, which convc does not map",
    "test_clip_default_int8_inbounds": "integer tensors: convc computes in float32",
    "test_clip_default_int8_inbounds_expanded": "integer tensors: convc computes in float32",
    "test_clip_default_int8_max": "integer tensors: convc computes in float32",
    "test_clip_default_int8_max_expanded": "integer tensors: convc computes in float32",
    "test_clip_default_int8_min": "integer tensors: convc computes in float32",
    "test_clip_default_int8_min_expanded": "integer tensors: convc computes in float32",
    "test_clip_default_max_expanded": "expanded into Exp/ReduceMax/ReduceSum, which convc does not map",
    "test_clip_default_min_expanded": "expanded into Exp/ReduceMax/ReduceSum, which convc does not map",
    "test_clip_example": "a rank-1 input has no per-sample axes (its only axis is the batch)",
    "test_clip_example_expanded": "expanded into Exp/ReduceMax/ReduceSum, which convc does not map",
    "test_clip_expanded": "expanded into Exp/ReduceMax/ReduceSum, which convc does not map",
    "test_clip_inbounds": "a rank-1 input has no per-sample axes (its only axis is the batch)",
    "test_clip_inbounds_expanded": "expanded into Exp/ReduceMax/ReduceSum, which convc does not map",
    "test_clip_min_greater_than_max": "a rank-1 input has no per-sample axes (its only axis is the batch)",
    "test_clip_min_greater_than_max_expanded": "expanded into Exp/ReduceMax/ReduceSum, which convc does not map",
    "test_clip_outbounds": "a rank-1 input has no per-sample axes (its only axis is the batch)",
    "test_clip_outbounds_expanded": "expanded into Exp/ReduceMax/ReduceSum, which convc does not map",
    "test_clip_splitbounds": "a rank-1 input has no per-sample axes (its only axis is the batch)",
    "test_clip_splitbounds_expanded": "expanded into Exp/ReduceMax/ReduceSum, which convc does not map",
    "test_concat_1d_axis_0": "a rank-1 input has no per-sample axes (its only axis is the batch)",
    "test_concat_1d_axis_negative_1": "a rank-1 input has no per-sample axes (its only axis is the batch)",
    "test_concat_2d_axis_0": "concatenation along the batch axis",
    "test_concat_2d_axis_negative_2": "concatenation along the batch axis",
    "test_concat_3d_axis_0": "concatenation along the batch axis",
    "test_concat_3d_axis_negative_3": "concatenation along the batch axis",
    "test_div_example": "a rank-1 input has no per-sample axes (its only axis is the batch)",
    "test_div_int16": "integer tensors: convc computes in float32",
    "test_div_int32_trunc": "integer tensors: convc computes in float32",
    "test_div_int8": "integer tensors: convc computes in float32",
    "test_div_uint16": "integer tensors: convc computes in float32",
    "test_div_uint32": "integer tensors: convc computes in float32",
    "test_div_uint64": "integer tensors: convc computes in float32",
    "test_div_uint8": "integer tensors: convc computes in float32",
    "test_dropout_default_mask": "Dropout's mask output (a bool tensor) is not supported",
    "test_dropout_default_mask_ratio": "Dropout's mask output (a bool tensor) is not supported",
    "test_dropout_default_old": "a rank-1 input has no per-sample axes (its only axis is the batch)",
    "test_flatten_axis0": "Flatten at an axis other than 1 merges the batch into another axis",
    "test_flatten_axis2": "Flatten at an axis other than 1 merges the batch into another axis",
    "test_flatten_axis3": "Flatten at an axis other than 1 merges the batch into another axis",
    "test_flatten_negative_axis1": "Flatten at an axis other than 1 merges the batch into another axis",
    "test_flatten_negative_axis2": "Flatten at an axis other than 1 merges the batch into another axis",
    "test_flatten_negative_axis4": "Flatten at an axis other than 1 merges the batch into another axis",
    "test_gemm_all_attributes": "transA puts the batch on the second axis of A",
    "test_gemm_default_matrix_bias": "bias C is a full M×N matrix, different for every sample",
    "test_gemm_transposeA": "transA puts the batch on the second axis of A",
    "test_identity_opt": "integer tensors: convc computes in float32",
    "test_identity_sequence": "integer tensors: convc computes in float32",
    "test_leakyrelu_default_expanded": "expanded into Exp/ReduceMax/ReduceSum, which convc does not map",
    "test_leakyrelu_example": "a rank-1 input has no per-sample axes (its only axis is the batch)",
    "test_leakyrelu_example_expanded": "expanded into Exp/ReduceMax/ReduceSum, which convc does not map",
    "test_leakyrelu_expanded": "expanded into Exp/ReduceMax/ReduceSum, which convc does not map",
    "test_maxpool_2d_uint8": "integer tensors: convc computes in float32",
    "test_maxpool_3d_default": "3-D window: convc pools and convolves over 1-D and 2-D maps only",
    "test_maxpool_3d_dilations": "3-D window: convc pools and convolves over 1-D and 2-D maps only",
    "test_maxpool_3d_dilations_use_ref_impl": "3-D window: convc pools and convolves over 1-D and 2-D maps only",
    "test_maxpool_3d_dilations_use_ref_impl_large": "3-D window: convc pools and convolves over 1-D and 2-D maps only",
    "test_maxpool_with_argmax_2d_precomputed_pads": "MaxPool's Indices output is not supported",
    "test_maxpool_with_argmax_2d_precomputed_strides": "MaxPool's Indices output is not supported",
    "test_mul_example": "a rank-1 input has no per-sample axes (its only axis is the batch)",
    "test_mul_int16": "integer tensors: convc computes in float32",
    "test_mul_int8": "integer tensors: convc computes in float32",
    "test_mul_uint16": "integer tensors: convc computes in float32",
    "test_mul_uint32": "integer tensors: convc computes in float32",
    "test_mul_uint64": "integer tensors: convc computes in float32",
    "test_mul_uint8": "integer tensors: convc computes in float32",
    "test_operator_add_broadcast": "integer tensors: convc computes in float32",
    "test_operator_add_size1_broadcast": "integer tensors: convc computes in float32",
    "test_operator_add_size1_right_broadcast": "integer tensors: convc computes in float32",
    "test_operator_add_size1_singleton_broadcast": "integer tensors: convc computes in float32",
    "test_operator_addconstant": "integer tensors: convc computes in float32",
    "test_operator_addmm": "bias C is a full M×N matrix, different for every sample",
    "test_operator_pad": "reflect padding; only constant mode is in scope",
    "test_operator_view": "a rank-1 input has no per-sample axes (its only axis is the batch)",
    "test_prelu_broadcast_expanded": "expanded into Exp/ReduceMax/ReduceSum, which convc does not map",
    "test_prelu_example": "the slope has the input's full shape, so it differs per sample; PRelu needs a constant slope",
    "test_prelu_example_expanded": "expanded into Exp/ReduceMax/ReduceSum, which convc does not map",
    "test_relu_expanded_ver18": "expanded into Exp/ReduceMax/ReduceSum, which convc does not map",
    "test_reshape_allowzero_reordered": "the target shape changes the batch axis",
    "test_reshape_negative_extended_dims": "the target shape changes the batch axis",
    "test_reshape_one_dim": "the target shape changes the batch axis",
    "test_reshape_reordered_all_dims": "the target shape changes the batch axis",
    "test_sigmoid_example": "a rank-1 input has no per-sample axes (its only axis is the batch)",
    "test_softmax_axis_0": "softmax over the batch axis",
    "test_softmax_axis_0_expanded": "expanded into Exp/ReduceMax/ReduceSum, which convc does not map",
    "test_softmax_axis_0_expanded_ver18": "expanded into Exp/ReduceMax/ReduceSum, which convc does not map",
    "test_softmax_axis_1_expanded": "expanded into Exp/ReduceMax/ReduceSum, which convc does not map",
    "test_softmax_axis_1_expanded_ver18": "expanded into Exp/ReduceMax/ReduceSum, which convc does not map",
    "test_softmax_axis_2_expanded": "expanded into Exp/ReduceMax/ReduceSum, which convc does not map",
    "test_softmax_axis_2_expanded_ver18": "expanded into Exp/ReduceMax/ReduceSum, which convc does not map",
    "test_softmax_default_axis_expanded": "expanded into Exp/ReduceMax/ReduceSum, which convc does not map",
    "test_softmax_default_axis_expanded_ver18": "expanded into Exp/ReduceMax/ReduceSum, which convc does not map",
    "test_softmax_example_expanded": "expanded into Exp/ReduceMax/ReduceSum, which convc does not map",
    "test_softmax_example_expanded_ver18": "expanded into Exp/ReduceMax/ReduceSum, which convc does not map",
    "test_softmax_large_number_expanded": "expanded into Exp/ReduceMax/ReduceSum, which convc does not map",
    "test_softmax_large_number_expanded_ver18": "expanded into Exp/ReduceMax/ReduceSum, which convc does not map",
    "test_softmax_negative_axis_expanded": "expanded into Exp/ReduceMax/ReduceSum, which convc does not map",
    "test_softmax_negative_axis_expanded_ver18": "expanded into Exp/ReduceMax/ReduceSum, which convc does not map",
    "test_sub_example": "a rank-1 input has no per-sample axes (its only axis is the batch)",
    "test_sub_int16": "integer tensors: convc computes in float32",
    "test_sub_int8": "integer tensors: convc computes in float32",
    "test_sub_uint16": "integer tensors: convc computes in float32",
    "test_sub_uint32": "integer tensors: convc computes in float32",
    "test_sub_uint64": "integer tensors: convc computes in float32",
    "test_sub_uint8": "integer tensors: convc computes in float32",
    "test_sum_example": "a rank-1 input has no per-sample axes (its only axis is the batch)",
    "test_sum_one_input": "a rank-1 input has no per-sample axes (its only axis is the batch)",
    "test_sum_two_inputs": "a rank-1 input has no per-sample axes (its only axis is the batch)",
    "test_tanh_example": "a rank-1 input has no per-sample axes (its only axis is the batch)",
    "test_training_dropout": "training-mode Dropout (random output)",
    "test_training_dropout_default": "training-mode Dropout (random output)",
    "test_training_dropout_default_mask": "Dropout's mask output (a bool tensor) is not supported",
    "test_training_dropout_mask": "Dropout's mask output (a bool tensor) is not supported",
    "test_training_dropout_zero_ratio": "training-mode Dropout (random output)",
    "test_training_dropout_zero_ratio_mask": "Dropout's mask output (a bool tensor) is not supported",
    "test_transpose_all_permutations_2": "the permutation moves the batch axis",
    "test_transpose_all_permutations_3": "the permutation moves the batch axis",
    "test_transpose_all_permutations_4": "the permutation moves the batch axis",
    "test_transpose_all_permutations_5": "the permutation moves the batch axis",
    "test_transpose_default": "the permutation moves the batch axis",
    # slicing, reductions, matmul (issue 13)
    "test_gather_0": "gathers along the batch axis",
    "test_gather_negative_indices": "a rank-1 input: its only axis is the batch axis",
    "test_matmul_1d_1d": "a rank-1 input: its only axis is the batch axis",
    "test_matmul_1d_3d": "a rank-1 input: its only axis is the batch axis",
    "test_operator_chunk": "a rank-1 input: its only axis is the batch axis",
    "test_operator_index": "slices and squeezes the batch axis",
    "test_reduce_max_bool_inputs": "bool tensors: convc computes in float32",
    "test_reduce_max_default_axes_keepdim_example": "no axes: reduces the batch axis too",
    "test_reduce_max_default_axes_keepdims_random": "no axes: reduces the batch axis too",
    "test_reduce_max_empty_set": "an empty tensor (an axis of size 0)",
    "test_reduce_max_empty_set_bool": "bool tensors: convc computes in float32",
    "test_reduce_mean_default_axes_keepdims_example": "no axes: reduces the batch axis too",
    "test_reduce_mean_default_axes_keepdims_random": "no axes: reduces the batch axis too",
    "test_reduce_sum_default_axes_keepdims_example": "no axes: reduces the batch axis too",
    "test_reduce_sum_default_axes_keepdims_random": "no axes: reduces the batch axis too",
    "test_reduce_sum_empty_set": "an empty tensor (an axis of size 0)",
    "test_reduce_sum_empty_set_non_reduced_axis_zero": "an empty tensor (an axis of size 0)",
    "test_slice": "slices the batch axis",
    "test_slice_neg_steps": "slices the batch axis",
    "test_slice_start_out_of_bounds": "the slice is empty (an axis of size 0)",
    "test_split_1d_uneven_split_opset18": "a rank-1 input: its only axis is the batch axis",
    "test_split_equal_parts_1d_opset13": "a rank-1 input: its only axis is the batch axis",
    "test_split_equal_parts_1d_opset18": "a rank-1 input: its only axis is the batch axis",
    "test_split_equal_parts_default_axis_opset13": "a rank-1 input: its only axis is the batch axis",
    "test_split_equal_parts_default_axis_opset18": "a rank-1 input: its only axis is the batch axis",
    "test_split_variable_parts_1d_opset13": "a rank-1 input: its only axis is the batch axis",
    "test_split_variable_parts_1d_opset18": "a rank-1 input: its only axis is the batch axis",
    "test_split_variable_parts_default_axis_opset13": "a rank-1 input: its only axis is the batch axis",
    "test_split_variable_parts_default_axis_opset18": "a rank-1 input: its only axis is the batch axis",
    "test_split_zero_size_splits_opset13": "empty tensors (axes of size 0)",
    "test_split_zero_size_splits_opset18": "empty tensors (axes of size 0)",
    "test_squeeze": "squeezes the batch axis",
    "test_unsqueeze_axis_0": "inserts an axis before the batch axis",
}

backend_test = onnx.backend.test.BackendTest(ConvcBackend, __name__)
for pattern in FAMILIES.values():
    backend_test.include("^" + pattern + r".*cpu$")
for name in EXCLUDED:
    backend_test.exclude(rf"^{name}_cpu$")

_IN_SCOPE = re.compile("|".join(f"(?:{p}.*cpu$)" for p in FAMILIES.values()))


def in_scope(test_name: str) -> bool:
    """A CPU test of an in-scope family (excluded ones stay, reported as skipped). The light models are
    tested in test_onnx_light_models.py."""
    return test_name.endswith("_cpu") and _IN_SCOPE.match(test_name) is not None


_cases = backend_test.test_cases  # a property that builds new classes on every access
for _case in _cases.values():
    for _attr in [a for a in vars(_case) if a.startswith("test_")]:
        if not in_scope(_attr):
            delattr(_case, _attr)
del _case, _attr  # a module-level TestCase class would be collected twice
globals().update({k: v for k, v in _cases.items()
                  if any(a.startswith("test_") for a in vars(v))})


@pytest.fixture(autouse=True)
def _quiet_convc_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvcWarning)
        yield
