"""The Winograd F(2×2, 3×3) conv2d kernel (compiler/kernels/winograd.py) against the float64 interpreter.

Most cases force the kernel on every layer it can take (kernels={"*": "winograd"}), so small odd shapes
reach it; the last tests check which layers the cost model gives it.
"""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import compiler
from compiler.kernels import winograd
from compiler.lower import lower
from compiler.memory import plan_memory
from compiler.passes import optimize
from conftest import AVX2, AVX512, compile_and_check, kernel_plan, model_dict

WINOGRAD = "ops/conv2d_winograd.c.j2"
ALWAYS = {"*": "winograd"}  # every layer the kernel can take


def load_quietly(description):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", compiler.ConvcWarning)
        return compiler.load(description)


def templates(graph, opt_level=2, target=AVX512, kernels=None):
    """Layer name -> the template of its chosen kernel."""
    return {name: c.template for name, c in kernel_plan(graph, target, opt_level, kernels)[1].choices.items()}


def check(graph, batch=3, threads=1, seed=0, kernels=ALWAYS):
    compile_and_check(graph, batch, seed, opt_level=2, threads=threads, march=AVX512, kernels=kernels)


def conv(c_out, padding=1, bias=True, name="c"):
    return {"name": name, "op": "conv2d", "filters": c_out, "kernel": 3, "padding": padding, "bias": bias}


SHAPES = {  # (C, K, H, W, padding)
    "5x7-pad1": (17, 20, 5, 7, 1),
    "8x8-pad1": (16, 32, 8, 8, 1),
    "13x11-pad0": (17, 20, 13, 11, 0),
    "13x11-pad2": (9, 33, 13, 11, 2),
    "32x32-pad1": (24, 48, 32, 32, 1),
    "asymmetric-pad": (20, 20, 12, 10, [0, 1, 2, 0]),
    "asymmetric-pad-odd": (11, 7, 9, 6, [2, 0, 1, 2]),
    "one-output-row": (10, 16, 3, 9, 0),
    "one-output": (12, 5, 3, 3, 0),
    "wide-row": (9, 18, 4, 70, 1),
}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", sorted(SHAPES))
def test_winograd_matches_the_interpreter(case, threads):
    c, k, h, w, padding = SHAPES[case]
    graph = load_quietly(model_dict([conv(k, padding)], shape=(c, h, w)))
    assert templates(graph, kernels=ALWAYS)["c"] == WINOGRAD
    check(graph, batch=3, threads=threads)


@pytest.mark.parametrize("target", [AVX2, AVX512], ids=["avx2", "avx512"])
@pytest.mark.parametrize("case", sorted(SHAPES))
def test_winograd_reads_a_channel_blocked_input(case, target):
    """A 1×1 conv before it writes its input channel-blocked (C rounded up to whole vectors on both targets): the
    transform runs on vectors of channels of one tile. 5x7-pad1 takes items of several tile rows, wide-row
    several register blocks per row."""
    c, k, h, w, padding = SHAPES[case]
    c = -(-c // 16) * 16
    layers = [{"name": "p", "op": "conv2d", "filters": c, "kernel": 1}, {"op": "relu"}, conv(k, padding)]
    graph = load_quietly(model_dict(layers, shape=(12, h, w)))
    _, plan = kernel_plan(graph, target, 2, {"c": "winograd"})
    assert plan["c"].kernel == "winograd" and plan["c"].layouts[0] == target.lanes
    compile_and_check(graph, 2, c + k, opt_level=2, threads=2, march=target, kernels={"c": "winograd"})
    if case == "13x11-pad2":
        compile_and_check(graph, 1, 3, opt_level=2, threads=1, march=target, kernels={"c": "winograd"},
                          cflags=["-DCONVC_NO_VECTOR_EXTENSIONS"])


EPILOGUES = {
    "relu": [{"op": "relu"}],
    "relu6": [{"op": "relu6"}],
    "leaky": [{"op": "leaky_relu", "negative_slope": 0.2}],
    "residual-relu": [{"name": "s", "op": "add", "inputs": ["c", "x"]}, {"op": "relu"}],
    "residual-relu6": [{"name": "s", "op": "add", "inputs": ["x", "c"]}, {"op": "relu6"}],
    "residual-leaky": [{"name": "s", "op": "add", "inputs": ["c", "x"]}, {"op": "leaky_relu", "negative_slope": 0.1}],
    "residual-only": [{"name": "s", "op": "add", "inputs": ["c", "x"]}],
    "batchnorm-clip": [{"name": "bn", "op": "batchnorm"}, {"op": "clip", "min": -0.3, "max": 0.4}],
}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", sorted(EPILOGUES))
def test_winograd_fused_epilogues(case, threads):
    graph = load_quietly(model_dict([conv(18, bias=False), *EPILOGUES[case]], shape=(18, 11, 13), seed=4))
    fused = optimize(graph, 2)
    (layer,) = [x for x in fused.layers() if x.op in ("conv2d", "fused_conv2d")]
    assert set(templates(graph, kernels=ALWAYS).values()) >= {WINOGRAD}
    if case.startswith("residual"):
        assert layer.op == "fused_conv2d" and len(layer.inputs) == 2
    check(graph, batch=3, threads=threads, seed=1)


def test_winograd_layers_in_a_chain_share_the_arena():
    """Two Winograd layers with different scratch sizes, a pool between: the plan must keep them apart."""
    layers = [conv(20, name="a"), {"op": "relu"}, conv(36, name="b"), {"op": "maxpool2d", "kernel": 2},
              conv(16, name="d"), {"name": "s", "op": "add", "inputs": ["d", "d"]}]
    graph = load_quietly(model_dict(layers, shape=(12, 14, 18)))
    assert list(templates(graph, kernels=ALWAYS).values()).count(WINOGRAD) == 3
    check(graph, batch=2, threads=2)


@settings(max_examples=12, deadline=None, derandomize=True, database=None)
@given(st.integers(9, 40), st.integers(1, 40), st.integers(3, 20), st.integers(3, 20),
       st.lists(st.integers(0, 2), min_size=4, max_size=4), st.booleans(), st.integers(1, 2))
def test_winograd_random_shapes(c, k, h, w, padding, residual, threads):
    t, left, b, r = padding
    if h + t + b < 3 or w + left + r < 3:
        return
    layers = [conv(k, padding)]
    if residual and k == c and t + b == 2 and left + r == 2:
        layers.append({"name": "s", "op": "add", "inputs": ["c", "x"]})
    layers.append({"op": "relu"})
    graph = load_quietly(model_dict(layers, shape=(c, h, w)))
    assert list(templates(graph, kernels=ALWAYS).values()) == [WINOGRAD]  # the conv, relu fused in
    check(graph, batch=2, threads=threads, seed=c + k)


def test_only_3x3_stride_1_undilated_dense_convs_are_eligible():
    layers = [conv(16, name="w"), {"name": "s2", "op": "conv2d", "filters": 16, "kernel": 3, "stride": 2},
              {"name": "dil", "op": "conv2d", "filters": 16, "kernel": 3, "dilation": 2, "padding": 2},
              {"name": "grp", "op": "conv2d", "filters": 16, "kernel": 3, "groups": 2, "padding": 1},
              {"name": "k5", "op": "conv2d", "filters": 16, "kernel": 5, "padding": 2},
              {"name": "few", "op": "conv2d", "filters": 8, "kernel": 3, "padding": 1},
              {"name": "after_few", "op": "conv2d", "filters": 16, "kernel": 3, "padding": 1}]
    chosen = templates(load_quietly(model_dict(layers, shape=(16, 20, 20))), kernels=ALWAYS)
    assert chosen["w"] == chosen["few"] == WINOGRAD and chosen["after_few"] != WINOGRAD  # 8 input channels: row-vector kernel
    assert all(chosen[n] != WINOGRAD for n in ("s2", "dil", "grp", "k5"))
    assert all(t != WINOGRAD for t in templates(load_quietly(model_dict([conv(16)], shape=(16, 9, 9))), 1).values())


def test_cost_model_takes_winograd_for_big_maps_and_keeps_direct_for_tiny_maps_with_huge_weights():
    """ResNet-18: the 56×56×64 layers take Winograd; the 7×7×512 ones (16 MB of transformed weights
    streamed for 16 tiles) keep the blocked kernel."""
    big = load_quietly(model_dict([conv(64, bias=False)], shape=(64, 56, 56)))
    chosen = kernel_plan(big)[1]["c"]
    assert chosen.template == WINOGRAD and chosen.scratch_floats > 0 and chosen.reason.startswith("cost model")
    tiny = load_quietly(model_dict([conv(512, bias=False)], shape=(512, 7, 7)))
    assert templates(tiny)["c"] == "ops/conv2d_direct.c.j2"


@pytest.mark.parametrize("target", [AVX2, AVX512])
def test_cost_model_counts_the_cold_fetch_of_the_transformed_weights(target):
    """DenseNet-121's 128 -> 32 3×3 convs: U is 16/9 the direct kernel's weights, fetched from beyond L2 on
    every call. At 28×28 Winograd still wins; at 7×7 the extra fetch outweighs its saved products and the
    direct kernel keeps the layer (AVX2 Zen 3, in-model: 0.065 against 0.118 ms)."""
    def chosen(hw):
        return templates(load_quietly(model_dict([conv(32, bias=False)], shape=(128, hw, hw))), target=target)["c"]
    assert chosen(28) == WINOGRAD
    assert chosen(7) == "ops/conv2d_direct.c.j2"
    c, k = 128, 32
    assert winograd.cold_weight_cycles(c, k, 8) == (16 - 9) * c * k * 4 / winograd.COLD_WEIGHT_BYTES_PER_CYCLE[8]


@pytest.mark.parametrize("c, k", [(192, 384), (256, 256)])
def test_alexnets_13x13_convs_take_winograd_at_each_targets_own_rates(c, k):
    """AlexNet's 3×3s at 13×13 (4-6 MB of transformed weights, re-read from L3 per register block, and fetched
    cold on every call). AVX2: the stream term's 36 bytes per cycle give them Winograd (0.86-0.93 of the direct
    kernel's time, AVX2 Zen 3; with AVX-512's 24 they went direct). AVX-512: the cold fetch's 4 bytes per cycle
    give them Winograd (in-model on Zen 4: 1.58 against 2.07 ms and 1.45 against 1.86; with AVX2's 2 they went
    direct)."""
    graph = load_quietly(model_dict([conv(k, bias=False)], shape=(c, 13, 13)))
    assert templates(graph, target=AVX2)["c"] == WINOGRAD
    assert templates(graph, target=AVX512)["c"] == WINOGRAD


def test_the_direct_cost_counts_whole_vectors_of_filters():
    """EfficientNetV2-S's 24 -> 24 3×3s at 112×112: the direct kernel computes 32 filters on 16 lanes, so on
    AVX-512 Winograd wins (in-model on Zen 4: 1.47 against 2.09 ms); counted as 24 the direct kernel kept them."""
    args = {"OH": 112, "OW": 112}
    assert AVX512.lanes == 16
    assert winograd.direct_cycles(16, 1, 24, 24, args) == winograd.direct_cycles(16, 1, 24, 32, args)
    graph = load_quietly(model_dict([conv(24, bias=False)], shape=(24, 112, 112)))
    assert templates(graph, target=AVX512)["c"] == WINOGRAD


def test_scratch_is_planned_only_for_winograd_layers():
    graph, plan = kernel_plan(load_quietly(model_dict([conv(16, name="a"), conv(16, name="b")], shape=(16, 10, 10))),
                              kernels=ALWAYS)
    with_scratch = plan_memory(graph, plan)
    assert set(with_scratch.scratch) == {"a", "b"}
    a, b = with_scratch.buffers["a"], with_scratch.scratch["b"]
    assert b.index >= a.index + a.size or b.index + b.size <= a.index  # b's scratch beside its live input
    _, level1 = kernel_plan(graph, opt_level=1)
    assert plan_memory(graph, level1).scratch == {} and plan_memory(graph, level1).floats < with_scratch.floats
    with pytest.raises(ValueError, match="no scratch"):
        lower(graph, plan, plan_memory(graph, level1))


def test_weight_transform_reproduces_the_convolution_of_one_tile():
    """U = G g Gᵀ, V = Bᵀ d B, Y = Aᵀ (U ⊙ V) A equals the 2×2 correlation of the 4×4 patch (float64)."""
    rng = np.random.default_rng(0)
    g, d = rng.standard_normal((3, 3)), rng.standard_normal((4, 4))
    u = winograd.G @ g @ winograd.G.T
    v = winograd.BT @ d @ winograd.BT.T
    y = winograd.AT @ (u * v) @ winograd.AT.T
    direct = np.array([[np.sum(d[i:i + 3, j:j + 3] * g) for j in range(2)] for i in range(2)])
    np.testing.assert_allclose(y, direct, rtol=1e-12, atol=1e-12)
