"""lower (compiler/lower.py) on its own: from a graph, its kernel plan and its memory plan to the records the C
renders. One call per computed layer with the memory plan's pointers, the weights blob (64-byte aligned offsets,
each kernel's arrays in the layout its docs give, computed here in NumPy), the output copies, profile slots,
sample tensors and metadata, and the refusal of sizes a C int cannot index. No C is rendered or compiled; every
lowered model also passes verify_lowered.
"""
from __future__ import annotations

import string
import warnings

import numpy as np
import pytest

import compiler
from compiler import ModelError
from compiler.frontends.description import parse_description
from compiler.kernels.select import select_kernels
from compiler.lower import INDEX_LIMIT, Copy, Pointer, SampleTensor, c_identifier, c_name, lower
from compiler.memory import plan_memory
from compiler.passes import optimize
from compiler.shapes import infer_shapes
from compiler.verify import verify_lowered
from conftest import AVX2, AVX512, TARGET_IDS, TARGETS, model_dict

each_target = pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)


def stages(layers, shape, opt_level=2, target=AVX512, profile=False, **extra):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", compiler.ConvcWarning)
        graph = optimize(compiler.load(model_dict(layers, shape=shape, **extra)), opt_level)
    plan = select_kernels(graph, target, opt_level)
    arena = plan_memory(graph, plan)
    lowered = lower(graph, plan, arena, profile)
    verify_lowered(graph, plan, arena, lowered)
    return graph, plan, arena, lowered


def blob_array(lowered, layer, suffix, size):
    offset = lowered.weights.offsets[(layer, suffix)]
    return lowered.weights.data()[offset:offset + size]


# A conv fused with its activation, a residual add, a constant, a view and two outputs (one of them copied).
NET = [{"name": "conv1", "op": "conv2d", "filters": 16, "kernel": 3, "padding": 1}, {"name": "relu_2", "op": "relu"},
       {"name": "k", "op": "constant", "shape": [16, 1, 1]}, {"name": "m", "op": "mul", "inputs": ["relu_2", "k"]},
       {"name": "s", "op": "add", "inputs": ["m", "relu_2"]}, {"name": "f", "op": "flatten"},
       {"name": "fc", "op": "dense", "units": 5}]


@each_target
def test_one_call_per_computed_layer_with_the_memory_plans_pointers(target):
    graph, plan, arena, lowered = stages(NET, (3, 8, 8), target=target, outputs=["fc", "x"])
    # calls for the four computed layers in topological order, each named L<its position>_<its primary layer>
    order = [layer.name for layer in graph.layers()]
    assert [k.layer for k in lowered.kernels] == ["relu_2", "m", "s", "fc"]
    assert [c.fn for c in lowered.calls] == [f"L{order.index(n)}_{p}" for n, p in
                                             (("relu_2", "conv1"), ("m", "m"), ("s", "s"), ("fc", "fc"))]
    b = arena.buffers
    k_offset = lowered.weights.offsets[("k", "value")]
    def weights(layer):  # the layer's own constant arrays, passed after its tensors
        return tuple(Pointer("convc_weights", o) for (name, _), o in lowered.weights.offsets.items() if name == layer)
    assert weights("relu_2") and weights("fc")
    assert lowered.calls[0].args == (Pointer("x0"), Pointer("arena", b["relu_2"].index)) + weights("relu_2")
    assert lowered.calls[1].args == (Pointer("arena", b["relu_2"].index), Pointer("convc_weights", k_offset),
                                     Pointer("arena", b["m"].index))
    assert lowered.calls[2].args == (Pointer("arena", b["m"].index), Pointer("arena", b["relu_2"].index),
                                     Pointer("arena", b["s"].index))
    assert lowered.calls[3].args == (Pointer("arena", b["s"].index), Pointer("y0")) + weights("fc")  # f: s's storage
    assert lowered.copies == [Copy(Pointer("y1"), Pointer("x0"), 3 * 8 * 8)]
    assert lowered.sample_tensors == [SampleTensor("x0", 0, 192, True), SampleTensor("y0", 0, 5, False),
                                      SampleTensor("y1", 1, 192, False)]
    assert lowered.metadata["inputs"] == [{"name": "x", "shape": [3, 8, 8]}]
    assert lowered.metadata["outputs"] == [{"name": "fc", "shape": [5]}, {"name": "x", "shape": [3, 8, 8]}]
    assert lowered.metadata["arena_floats"] == arena.floats and lowered.arena is arena


def test_the_kernel_comment_names_the_primary_layer_and_the_merged_ones():
    """The README's example: conv1 + relu_2, the model's first layer, is L1_conv1 /* conv1 + relu_2 */."""
    _, _, _, lowered = stages(NET[:2], (3, 8, 8))
    assert lowered.kernels[0].context["fn"] == "L1_conv1"
    assert lowered.kernels[0].context["header"][0].startswith("layer 1 conv1 + relu_2 (fused_conv2d): 3x8x8 -> 16x8x8")


@each_target
def test_layers_of_one_configuration_share_one_function_with_their_own_weights(target):
    same = {"op": "conv2d", "filters": 8, "kernel": 3, "padding": 1}
    layers = [{"name": "a", **same}, {"name": "b", **same}, {"name": "c", **same, "stride": 2}]
    _, _, _, lowered = stages(layers, (8, 10, 10), target=target)
    assert [c.fn for c in lowered.calls] == ["L1_a", "L1_a", "L3_c"]
    assert [k.layer for k in lowered.kernels] == ["a", "c"]
    assert "also layer 2 b" in "\n".join(lowered.kernels[0].context["header"])
    own = [{p.offset for p in c.args if p.base == "convc_weights"} for c in lowered.calls]
    assert all(own) and not own[0] & own[1]  # a and b read their own arrays


def test_constants_come_first_and_every_array_starts_on_a_64_byte_line():
    _, _, _, lowered = stages(NET, (3, 8, 8))
    offsets = lowered.weights.offsets
    assert list(offsets)[0] == ("k", "value") and offsets[("k", "value")] == 0
    assert all(offset % 16 == 0 for offset in offsets.values())
    ends = sorted(offsets.values()) + [lowered.weights.floats]
    assert all(a < b for a, b in zip(ends, ends[1:]))  # distinct, inside the blob
    assert lowered.weights.data().dtype == np.dtype("<f4") and lowered.weights.data().size == lowered.weights.floats


def test_plain_kernels_read_the_weights_as_given_and_batchnorm_as_scale_and_shift():
    layers = [{"name": "c", "op": "conv2d", "filters": 4, "kernel": 3}, {"name": "p", "op": "maxpool2d", "kernel": 2},
              {"name": "bn", "op": "batchnorm", "eps": 0.01}]
    graph, _, _, lowered = stages(layers, (2, 6, 6), opt_level=0)
    w = graph.weights
    np.testing.assert_array_equal(blob_array(lowered, "c", "weight", 4 * 2 * 9), w["c.weight"].ravel())
    np.testing.assert_array_equal(blob_array(lowered, "c", "bias", 4), w["c.bias"])
    scale = w["bn.weight"].astype(np.float64) / np.sqrt(w["bn.running_var"].astype(np.float64) + 0.01)
    shift = w["bn.bias"] - w["bn.running_mean"] * scale
    np.testing.assert_allclose(blob_array(lowered, "bn", "scale", 4), scale, rtol=1e-6)
    np.testing.assert_allclose(blob_array(lowered, "bn", "shift", 4), shift, rtol=1e-6, atol=1e-7)


@each_target
def test_the_direct_kernel_reads_filters_packed_a_vector_at_a_time(target):
    """README/direct.py: weights packed [K/VL][C][KH][KW][VL], K zero-padded to whole vectors (VL: the target's lanes
    for more than 8 filters), bias zero-padded too."""
    graph, plan, _, lowered = stages([{"name": "c", "op": "conv2d", "filters": 20, "kernel": 3, "stride": 2}],
                                     (12, 9, 9), target=target)
    assert plan["c"].kernel == "direct"
    vl = target.lanes
    kb = -(-20 // vl)
    weight = np.zeros((kb * vl, 12, 3, 3), np.float32)
    weight[:20] = graph.weights["c.weight"]
    packed = np.stack([weight[b * vl:(b + 1) * vl].transpose(1, 2, 3, 0) for b in range(kb)])  # [KB][C][KH][KW][VL]
    np.testing.assert_array_equal(blob_array(lowered, "c", "weight", packed.size), packed.ravel())
    bias = np.zeros(kb * vl, np.float32)
    bias[:20] = graph.weights["c.bias"]
    np.testing.assert_array_equal(blob_array(lowered, "c", "bias", bias.size), bias)


@each_target
def test_a_kernel_with_scratch_gets_its_block_as_the_last_argument(target):
    graph, plan, arena, lowered = stages([{"name": "w", "op": "conv2d", "filters": 16, "kernel": 3, "padding": 1},
                                          {"name": "r", "op": "relu"}, {"name": "g", "op": "global_avgpool"}],
                                         (16, 12, 12), target=target)
    assert plan["r"].kernel == "winograd"
    call = lowered.calls[0]
    assert call.args[-1] == Pointer("arena", arena.scratch["r"].index)
    assert [p.base for p in call.args[2:-1]] == ["convc_weights"] * len(lowered.kernels[0].context["weights"])
    assert lowered.kernels[0].context["scratch"] is True and lowered.kernels[1].context["scratch"] is False


def test_a_memory_plan_without_the_kernels_scratch_is_refused():
    graph, plan, _, _ = stages([{"name": "w", "op": "conv2d", "filters": 16, "kernel": 3, "padding": 1}], (16, 12, 12))
    assert plan["w"].scratch_floats
    with pytest.raises(ValueError, match="'w'.*no scratch for this layer's kernel"):
        lower(graph, plan, plan_memory(graph, None))


def test_profile_slots_number_the_calls_in_order():
    _, _, _, plain = stages(NET, (3, 8, 8))
    assert all(c.profile_slot is None for c in plain.calls) and "profile_layers" not in plain.metadata
    _, _, _, timed = stages(NET, (3, 8, 8), profile=True)
    assert [c.profile_slot for c in timed.calls] == [0, 1, 2, 3]
    assert timed.metadata["profile_layers"] == ["relu_2", "m", "s", "fc"]


def test_the_lowered_model_carries_the_plans_layouts():
    conv = {"op": "conv2d", "kernel": 1}
    _, plan, _, lowered = stages([{"name": "e", **conv, "filters": 32},
                                  {"name": "d", **conv, "filters": 32, "kernel": 3, "groups": 32, "padding": 1},
                                  {"name": "p", **conv, "filters": 16},
                                  {"name": "z", **conv, "filters": 16, "kernel": 3, "stride": 2}], (12, 7, 7),
                                 target=AVX2)
    assert lowered.layouts == dict(plan.layouts) == {"e": 8, "d": 8, "p": 8}
    assert "layout: x0 [C/8][H][W][8], y [C/8][H][W][8]" in lowered.kernels[1].context["header"]


def test_names_reach_c_only_as_letters_digits_and_underscores():
    allowed = set(string.ascii_letters + string.digits + "_")
    for name in ['a"; system("rm -rf ~"); //', "*/ evil /*", "ünï cödé ☃", "x\0y", "x" * 100]:
        want = "".join(ch if ch in allowed else "_" for ch in name)[:40]
        assert c_name(name) == want and c_identifier(3, name) == f"L3_{want}"


# ---------------------------------------------------------------- sizes a C int cannot index
def huge(layers, shape):
    """A graph past compiler.Limits (parsed and shape-inferred only: no weights, nothing allocated)."""
    graph, _ = parse_description({"name": "huge", "input": {"name": "x", "shape": shape}, "layers": layers})
    infer_shapes(graph)
    plan = select_kernels(graph, AVX512, 0)
    return graph, plan, plan_memory(graph, plan)


def test_a_kernel_integer_past_a_c_int_is_refused():
    graph, plan, arena = huge([{"name": "a", "op": "relu"}], [2, 32768, 32768])  # 2^31 values per sample
    with pytest.raises(ModelError, match=rf"'a' \(relu\): kernel parameter N = {2**31} does not fit a C int"):
        lower(graph, plan, arena)


def test_an_arena_past_a_c_int_is_refused():
    """Two live tensors of 2^30 floats: each fits, the arena (2^31 floats) does not."""
    graph, plan, arena = huge([{"name": "a", "op": "relu"}, {"name": "b", "op": "relu"},
                               {"name": "s", "op": "add", "inputs": ["a", "b"]}], [1, 32768, 32768])
    assert arena.floats == 2**31 > INDEX_LIMIT
    with pytest.raises(ModelError, match=f"the arena needs {2**31} floats; convc supports at most {INDEX_LIMIT}"):
        lower(graph, plan, arena)


def test_a_tensor_past_a_c_int_is_refused_even_without_a_kernel():
    graph, plan, arena = huge([{"name": "f", "op": "flatten"}], [2, 32768, 32768])  # a view of the input: a copy
    assert not plan.choices
    with pytest.raises(ModelError, match=f"'x' \\(input\\): output has {2**31} values per sample"):
        lower(graph, plan, arena)
