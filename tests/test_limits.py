"""compiler.Limits: sizes a model file asks for are checked before weights, tables or C exist."""
import numpy as np
import pytest

import compiler
from compiler import Limits, ModelError
from compiler.limits import C_INT_MAX, DEFAULT_LIMITS
from conftest import model_dict


def load_error(desc, **kw) -> str:
    with pytest.raises(ModelError) as e:
        compiler.load(desc, **kw)
    return str(e.value)


@pytest.mark.parametrize("shape, needle", [
    ([3, 2**20, 2**20], "max_spatial"),  # would need 3.3e12 floats and hours of table building
    ([2**14, 2**12, 2**12], "max_tensor_elements"),
    ([1, 2**31, 2**31], "max_spatial"),
    ([2**40], "max_tensor_elements"),
])
def test_huge_input_is_refused_before_anything_is_allocated(shape, needle):
    msg = load_error(model_dict([{"op": "relu"}], shape=shape))
    assert needle in msg and "compiler.Limits" in msg


def test_huge_weights_are_refused_before_they_are_initialized():
    # 65536 filters of 64x64 kernels over 64 channels: 1.7e10 weights, 69 GB if created.
    desc = model_dict([{"name": "big", "op": "conv2d", "filters": 65536, "kernel": 64}], shape=(64, 64, 64))
    msg = load_error(desc)
    assert "layer 'big' (conv2d)" in msg and "'big.weight'" in msg and "max_weights" in msg


@pytest.mark.parametrize("attrs, name", [
    ({"filters": 2, "kernel": 3, "padding": 2**40}, "padding"),
    ({"filters": 2, "kernel": 3, "stride": 2**33}, "stride"),
    ({"filters": 2, "kernel": 3, "dilation": [1, 2**31]}, "dilation"),
    ({"filters": 2**63, "kernel": 1}, "filters"),
])
def test_huge_attributes_are_refused_by_name(attrs, name):
    msg = load_error(model_dict([{"name": "c", "op": "conv2d", **attrs}], shape=(1, 8, 8)))
    assert "layer 'c' (conv2d)" in msg and f"attribute '{name}'" in msg and "max_attribute" in msg


def test_pool_window_larger_than_int_is_refused():
    msg = load_error(model_dict([{"name": "p", "op": "maxpool2d", "kernel": 2**41, "padding": 2**40}]))
    assert "layer 'p'" in msg and "max_attribute" in msg


def test_too_many_layers():
    desc = model_dict([{"op": "relu"}] * 50, shape=(4,))
    assert "max_layers" in load_error(desc, limits=Limits(max_layers=20))
    compiler.load(desc)  # the default allows it


def test_limits_are_configurable_both_ways():
    desc = model_dict([{"name": "c", "op": "conv2d", "filters": 8, "kernel": 3}], shape=(4, 16, 16))
    assert "max_tensor_elements" in load_error(desc, limits=Limits(max_tensor_elements=1000))
    assert "max_weights" in load_error(desc, limits=Limits(max_weights=100))
    assert "max_spatial" in load_error(desc, limits=Limits(max_spatial=8))
    with pytest.raises(ModelError, match="max_tensor_elements"):
        compiler.compile(desc, limits=Limits(max_tensor_elements=1000))
    big = model_dict([{"op": "relu"}], shape=(1, 300000, 2))
    assert "max_spatial" in load_error(big)
    assert compiler.load(big, limits=Limits(max_spatial=2**19)).shape("relu_1") == (1, 300000, 2)


def test_description_file_size_limit(tmp_path):
    p = tmp_path / "m.yaml"
    p.write_text("input: {shape: [1, 4, 4]}\nlayers: [{op: relu}]\n" + "# padding\n" * 100)
    compiler.load(p)
    msg = load_error(p, limits=Limits(max_description_bytes=200))
    assert str(p) in msg and "max_description_bytes" in msg


@pytest.mark.parametrize("bad", [0, -1, 2**31, 1.5, True, "10"])
def test_limits_reject_values_a_c_int_cannot_hold(bad):
    with pytest.raises(ValueError, match="max_weights"):
        Limits(max_weights=bad)


def test_defaults_fit_real_cnns():
    # VGG-16 at 224x224: 138 M weights, largest tensor 64x224x224; ResNet-50: 25.6 M weights.
    assert DEFAULT_LIMITS.max_weights >= 138_357_544
    assert DEFAULT_LIMITS.max_tensor_elements >= 64 * 224 * 224
    assert all(getattr(DEFAULT_LIMITS, f) <= C_INT_MAX for f in DEFAULT_LIMITS.__dataclass_fields__)


def test_kernel_integers_that_overflow_c_int_are_refused_at_lowering():
    # The limits keep every kernel integer small; lowering checks again, as the last line before C.
    from compiler.ir import Layer
    from compiler.lower import check_c_ints
    layer = compiler.load(model_dict([{"name": "c", "op": "conv2d", "filters": 2, "kernel": 3}])).layer("c")
    check_c_ints(layer, {"K": 2, "row_lo": [0, 1, 2], "w": {"weight": 0}})
    for context in ({"HW": 2**31}, {"row_lo": [0, -(2**31) - 1]}, {"w": {"weight": np.int64(2**40)}}):
        with pytest.raises(ModelError, match="layer 'c' \\(conv2d\\).*does not fit a C int"):
            check_c_ints(layer, context)
    assert isinstance(layer, Layer)


def test_security_doc_lists_every_limit_with_its_default():
    from conftest import ROOT
    text = (ROOT / "docs" / "SECURITY.md").read_text()
    for name in DEFAULT_LIMITS.__dataclass_fields__:
        assert f"| `{name}` |" in text, f"docs/SECURITY.md does not list Limits.{name}"


@pytest.mark.parametrize("layers, shape", [
    # an input past the limits is refused before a pooling layer's shape rule walks its 2**31 rows
    ([{"op": "maxpool2d", "kernel": 2}], [1, 2**31, 4]),
    ([{"op": "avgpool2d", "kernel": 3, "padding": 1}], [1, 4, 2**40]),
    # padding grows the tensor layer by layer; the layer that crosses the limit stops shape inference
    ([{"name": f"p{i}", "op": "conv2d", "filters": 1, "kernel": 1, "padding": 60000} for i in range(40)]
     + [{"op": "maxpool2d", "kernel": 2}], [1, 4, 4]),
])
def test_sizes_are_checked_layer_by_layer_during_shape_inference(layers, shape):
    msg = load_error(model_dict(layers, shape=shape))
    assert "max_spatial" in msg or "max_tensor_elements" in msg
    if len(layers) > 2:
        assert "layer 'p0' (conv2d)" in msg  # stopped at the first layer past the limit
