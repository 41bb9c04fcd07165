"""ONNX's own backend test suite (onnx.backend.test.BackendTest) run against convc, for the operator families
convc supports. Node test data comes from the installed onnx package; nothing is vendored.

Every test that cannot pass is excluded by name below, with the reason.
"""
import os
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
    "Pow": r"test_pow",
    # activations and element-wise unary math
    "HardSwish": r"test_hardswish",
    "HardSigmoid": r"test_hardsigmoid",
    "Gelu": r"test_gelu_",
    "Mish": r"test_mish",
    "Softplus": r"test_(softplus|Softplus)",
    "Elu": r"test_(elu|ELU)",
    "Selu": r"test_(selu|SELU)",
    "Exp": r"test_(exp(?!and)|operator_exp)",
    "Log": r"test_log(?!_?softmax)",
    "Sqrt": r"test_(sqrt|operator_sqrt)",
    "Erf": r"test_erf",
    "Abs": r"test_abs",
    "Neg": r"test_neg(_|$)",
    "Reciprocal": r"test_reciprocal",
    # normalization, resampling, transposed convolution
    "LayerNormalization": r"test_layer_normalization_",
    "GroupNormalization": r"test_group_normalization_",
    "InstanceNormalization": r"test_instancenorm_",
    "Resize": r"test_resize_",
    "Upsample": r"test_upsample_",
    "ConvTranspose": r"test_(convtranspose|ConvTranspose2d|operator_convtranspose)",
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
    "test_pow_types_int32_float32": "integer tensors: convc computes in float32",
    "test_pow_types_int32_int32": "integer tensors: convc computes in float32",
    "test_pow_types_int64_float32": "integer tensors: convc computes in float32",
    "test_pow_types_int64_int64": "integer tensors: convc computes in float32",
    "test_elu_default_expanded_ver18": "expanded with Less and Where (boolean tensors), which convc does not map",
    "test_elu_example_expanded_ver18": "expanded with Less and Where (boolean tensors), which convc does not map",
    "test_elu_expanded_ver18": "expanded with Less and Where (boolean tensors), which convc does not map",
    "test_selu_default_expanded_ver18": "expanded with Less and Where (boolean tensors), which convc does not map",
    "test_selu_example_expanded_ver18": "expanded with Less and Where (boolean tensors), which convc does not map",
    "test_selu_expanded_ver18": "expanded with Less and Where (boolean tensors), which convc does not map",
    "test_reshape_allowzero_reordered": "a zero-size input (its first axis has size 0)",
    "test_matmul_1d_1d": "the product of two vectors is a rank-0 tensor; convc's tensors have at least one axis",
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
    "test_clip_default_int8_inbounds": "integer tensors: convc computes in float32",
    "test_clip_default_int8_inbounds_expanded": "integer tensors: convc computes in float32",
    "test_clip_default_int8_max": "integer tensors: convc computes in float32",
    "test_clip_default_int8_max_expanded": "integer tensors: convc computes in float32",
    "test_clip_default_int8_min": "integer tensors: convc computes in float32",
    "test_clip_default_int8_min_expanded": "integer tensors: convc computes in float32",
    "test_clip_default_max_expanded": "expanded with Less and Where (boolean tensors), which convc does not map",
    "test_clip_default_min_expanded": "expanded with Less and Where (boolean tensors), which convc does not map",
    "test_clip_example_expanded": "expanded with Less and Where (boolean tensors), which convc does not map",
    "test_clip_expanded": "expanded with Less and Where (boolean tensors), which convc does not map",
    "test_clip_inbounds_expanded": "expanded with Less and Where (boolean tensors), which convc does not map",
    "test_clip_min_greater_than_max_expanded": "expanded with Less and Where (boolean tensors), which convc does not map",
    "test_clip_outbounds_expanded": "expanded with Less and Where (boolean tensors), which convc does not map",
    "test_clip_splitbounds_expanded": "expanded with Less and Where (boolean tensors), which convc does not map",
    "test_div_int16": "integer tensors: convc computes in float32",
    "test_div_int32_trunc": "integer tensors: convc computes in float32",
    "test_div_int8": "integer tensors: convc computes in float32",
    "test_div_uint16": "integer tensors: convc computes in float32",
    "test_div_uint32": "integer tensors: convc computes in float32",
    "test_div_uint64": "integer tensors: convc computes in float32",
    "test_div_uint8": "integer tensors: convc computes in float32",
    "test_dropout_default_mask": "Dropout's mask output (a bool tensor) is not supported",
    "test_dropout_default_mask_ratio": "Dropout's mask output (a bool tensor) is not supported",
    "test_identity_opt": "an optional-typed input: convc computes float32 tensors",
    "test_identity_sequence": "a sequence-typed input: convc computes float32 tensors",
    "test_leakyrelu_default_expanded": "expanded with Less and Where (boolean tensors), which convc does not map",
    "test_leakyrelu_example_expanded": "expanded with Less and Where (boolean tensors), which convc does not map",
    "test_leakyrelu_expanded": "expanded with Less and Where (boolean tensors), which convc does not map",
    "test_maxpool_2d_uint8": "integer tensors: convc computes in float32",
    "test_maxpool_3d_default": "3-D window: convc pools and convolves over 1-D and 2-D maps only",
    "test_maxpool_3d_dilations": "3-D window: convc pools and convolves over 1-D and 2-D maps only",
    "test_maxpool_3d_dilations_use_ref_impl": "3-D window: convc pools and convolves over 1-D and 2-D maps only",
    "test_maxpool_3d_dilations_use_ref_impl_large": "3-D window: convc pools and convolves over 1-D and 2-D maps only",
    "test_maxpool_with_argmax_2d_precomputed_pads": "MaxPool's Indices output is not supported",
    "test_maxpool_with_argmax_2d_precomputed_strides": "MaxPool's Indices output is not supported",
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
    "test_operator_pad": "reflect padding; only constant mode is in scope",
    "test_prelu_broadcast_expanded": "expanded with Less and Where (boolean tensors), which convc does not map",
    "test_prelu_example_expanded": "expanded with Less and Where (boolean tensors), which convc does not map",
    "test_sub_int16": "integer tensors: convc computes in float32",
    "test_sub_int8": "integer tensors: convc computes in float32",
    "test_sub_uint16": "integer tensors: convc computes in float32",
    "test_sub_uint32": "integer tensors: convc computes in float32",
    "test_sub_uint64": "integer tensors: convc computes in float32",
    "test_sub_uint8": "integer tensors: convc computes in float32",
    "test_training_dropout": "training-mode Dropout (random output)",
    "test_training_dropout_default": "training-mode Dropout (random output)",
    "test_training_dropout_default_mask": "Dropout's mask output (a bool tensor) is not supported",
    "test_training_dropout_mask": "Dropout's mask output (a bool tensor) is not supported",
    "test_training_dropout_zero_ratio": "training-mode Dropout (random output)",
    "test_training_dropout_zero_ratio_mask": "Dropout's mask output (a bool tensor) is not supported",
    # activations and element-wise unary math
    # normalization, resampling, transposed convolution
    "test_convtranspose_3d": "3-D window: convc pools and convolves over 1-D and 2-D maps only",
    "test_resize_downsample_scales_cubic": "cubic Resize: convc's upsample is nearest or bilinear",
    "test_resize_downsample_scales_cubic_A_n0p5_exclude_outside": "cubic Resize: convc's upsample is nearest or bilinear",
    "test_resize_downsample_scales_cubic_align_corners": "cubic Resize: convc's upsample is nearest or bilinear",
    "test_resize_downsample_scales_cubic_antialias": "cubic Resize: convc's upsample is nearest or bilinear",
    "test_resize_downsample_scales_linear_align_corners": "ONNX's reference divides by the unrounded output size (2.4); onnxruntime, torch and convc by 2",
    "test_resize_downsample_scales_linear_antialias": "antialiased downsampling: convc's upsample does not filter",
    "test_resize_downsample_sizes_cubic": "cubic Resize: convc's upsample is nearest or bilinear",
    "test_resize_downsample_sizes_cubic_antialias": "cubic Resize: convc's upsample is nearest or bilinear",
    "test_resize_downsample_sizes_linear_antialias": "antialiased downsampling: convc's upsample does not filter",
    "test_resize_tf_crop_and_resize": "tf_crop_and_resize (a region of interest, an extrapolation value): not supported",
    "test_resize_tf_crop_and_resize_axes_2_3": "tf_crop_and_resize (a region of interest, an extrapolation value): not supported",
    "test_resize_tf_crop_and_resize_axes_3_2": "tf_crop_and_resize (a region of interest, an extrapolation value): not supported",
    "test_resize_tf_crop_and_resize_extrapolation_value": "tf_crop_and_resize (a region of interest, an extrapolation value): not supported",
    "test_resize_upsample_scales_cubic": "cubic Resize: convc's upsample is nearest or bilinear",
    "test_resize_upsample_scales_cubic_A_n0p5_exclude_outside": "cubic Resize: convc's upsample is nearest or bilinear",
    "test_resize_upsample_scales_cubic_align_corners": "cubic Resize: convc's upsample is nearest or bilinear",
    "test_resize_upsample_scales_cubic_asymmetric": "cubic Resize: convc's upsample is nearest or bilinear",
    "test_resize_upsample_sizes_cubic": "cubic Resize: convc's upsample is nearest or bilinear",
    # slicing, reductions, matmul (issue 13)
    "test_reduce_max_bool_inputs": "bool tensors: convc computes in float32",
    "test_reduce_max_empty_set": "an empty tensor (an axis of size 0)",
    "test_reduce_max_empty_set_bool": "bool tensors: convc computes in float32",
    "test_reduce_sum_empty_set": "an empty tensor (an axis of size 0)",
    "test_reduce_sum_empty_set_non_reduced_axis_zero": "an empty tensor (an axis of size 0)",
    "test_slice_start_out_of_bounds": "the slice is empty (an axis of size 0)",
    "test_split_zero_size_splits_opset13": "empty tensors (axes of size 0)",
    "test_split_zero_size_splits_opset18": "empty tensors (axes of size 0)",
}

backend_test = onnx.backend.test.BackendTest(ConvcBackend, __name__)
for pattern in FAMILIES.values():
    backend_test.include("^" + pattern + r".*cpu$")
# CONVC_NODE_TESTS_ALL=1 runs the excluded tests too, to find exclusions that no longer hold.
for name in EXCLUDED if not os.environ.get("CONVC_NODE_TESTS_ALL") else ():
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
