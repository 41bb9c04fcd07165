"""The grouped kernel (compiler/kernels/grouped.py, templates/ops/conv2d_grouped.c.j2): 1 < groups, not depthwise.

Every test states its target (AVX2: 8 lanes, 16 registers; AVX-512: 16 lanes, 32 registers) and compares the
compiled model with the float64 interpreter (conftest's rtol 1e-4, atol 1e-5). Group widths run from 2 filters
(a vector zero-padded to 4 lanes) through 4 and 8 (vectors narrower than AVX-512's) to 16 and 32 (whole vectors,
several per group)."""
from __future__ import annotations

import pytest

import compiler
from compiler.kernels.grouped import grouped_lanes
from conftest import TARGET_IDS, TARGETS, AVX2, AVX512, compile_and_check, kernel_plan, model_dict

WIDTHS = (2, 4, 6, 8, 12, 16, 32)  # filters (and input channels) per group; 6 and 12 fill no whole vector


def conv(name, filters, kernel, inputs, groups, **kw):
    return {"name": name, "op": "conv2d", "filters": filters, "kernel": kernel, "inputs": inputs, "groups": groups,
            **kw}


def load(layers, shape, **extra):
    return compiler.load(model_dict(layers, shape=shape, name="grouped", seed=3, **extra))


# geometry -> (input shape, conv attributes): one model per geometry, one branch per group width (96 channels)
GEOMETRIES = {
    "3x3": ((96, 9, 11), {"kernel": 3, "padding": 1}),
    "3x3-stride2": ((96, 13, 10), {"kernel": 3, "stride": 2, "padding": 1}),
    "3x3-dilated-unpadded": ((96, 8, 7), {"kernel": 3, "dilation": 2, "padding": [0, 2]}),
    "5x3-stride-2x1-no-bias": ((96, 7, 12), {"kernel": [5, 3], "stride": [2, 1], "padding": [2, 1], "bias": False}),
    "1x1-stride2": ((96, 5, 6), {"kernel": 1, "stride": 2}),
}


def branches(attrs):
    """One grouped conv of the input per group width, and one with twice the filters of its inputs (CG = 3, KG = 6)."""
    layers = [conv(f"w{width}", 96, attrs["kernel"], ["x"], 96 // width, **{k: v for k, v in attrs.items()
                                                                             if k != "kernel"}) for width in WIDTHS]
    layers.append(conv("twice", 192, attrs["kernel"], ["x"], 32, **{k: v for k, v in attrs.items() if k != "kernel"}))
    return layers


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_every_group_width_matches_the_interpreter(geometry, target):
    shape, attrs = GEOMETRIES[geometry]
    graph = load(branches(attrs), shape, outputs=[layer["name"] for layer in branches(attrs)])
    _, plan = kernel_plan(graph, target)
    assert {c.kernel for c in plan.choices.values()} == {"grouped"}
    lanes = {name: plan[name].params.VL for name in plan.choices}
    assert lanes["w2"] == 4 and lanes["w4"] == 4 and lanes["w8"] == 8 and lanes["w16"] == target.lanes
    compile_and_check(graph, batch=2, march=target)


def blocked_chain(width: int, activation: str | None, residual: bool, shape=(32, 9, 10)):
    """A 1×1 conv e, the grouped conv g (+ e) (+ activation), a 1×1 conv p: e's and g's outputs can be
    channel-blocked, g reads and writes them."""
    c = shape[0]
    layers = [conv("e", c, 1, ["x"], 1), conv("g", c, 3, ["e"], c // width, padding=1)]
    last = "g"
    if residual:
        layers.append({"name": "sum", "op": "add", "inputs": ["g", "e"]})
        last = "sum"
    if activation:
        layers.append({"name": "act", "op": activation, "inputs": [last]})
        last = "act"
    layers.append(conv("p", 16, 1, [last], 1))
    return load(layers, shape)


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("width, activation, residual", [(4, "relu", True), (8, "relu6", False), (16, "relu", True),
                                                          (32, None, True), (2, "relu", True)],
                         ids=["w4-relu-add", "w8-relu6", "w16-relu-add", "w32-add", "w2-relu-add"])
def test_fused_epilogues_between_channel_blocked_tensors(width, activation, residual, target):
    graph = blocked_chain(width, activation, residual, shape=(64, 9, 10) if width == 32 else (32, 9, 10))
    optimized, plan = kernel_plan(graph, target)
    fused = next(name for name, c in plan.choices.items() if c.kernel == "grouped")
    layer = optimized.layer(fused)
    assert layer.op == ("fused_conv2d" if activation or residual else "conv2d")
    lanes = target.lanes
    whole = width % grouped_lanes(width, lanes) == 0
    # a group of 2 fills half a 4-lane vector: the layer reads and writes C×H×W (blocked_io: None)
    assert plan[fused].layouts == (lanes if whole else 0,) * (2 + residual), plan[fused].layouts
    compile_and_check(graph, batch=3, march=target)


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
def test_fused_epilogue_into_a_cxhxw_output(target):
    """The model's output is the fused layer (C×H×W), read from a C×H×W input with a residual."""
    layers = [conv("g", 24, 3, ["x"], 6, stride=1, padding=1), {"name": "sum", "op": "add", "inputs": ["g", "x"]},
              {"name": "act", "op": "leaky_relu", "negative_slope": 0.1, "inputs": ["sum"]}]
    graph = load(layers, (24, 7, 9))
    optimized, plan = kernel_plan(graph, target)
    (name,) = plan.choices
    assert plan[name].kernel == "grouped" and plan[name].layouts == (0, 0, 0)
    assert optimized.layer(name).op == "fused_conv2d"
    compile_and_check(graph, march=target)


def test_the_portable_path_computes_the_same():
    """-DCONVC_NO_VECTOR_EXTENSIONS: the scalar path reads the same packed weights (a partial group vector and a
    channel-blocked chain)."""
    layers = branches(GEOMETRIES["3x3-stride2"][1])
    for graph in (load(layers, (96, 13, 10), outputs=[layer["name"] for layer in layers]),
                  blocked_chain(8, "relu", True)):
        compile_and_check(graph, march=AVX512, cflags=["-DCONVC_NO_VECTOR_EXTENSIONS"])


# What the zoo's grouped layers look like (torchvision, 224×224): (C = K, groups, map, stride)
ZOO = {
    "regnet_x_400mf-s1": (64, 4, 28, 1),  # group width 16
    "regnet_x_400mf-s3": (400, 25, 14, 2),
    "regnet_y_400mf-s2": (104, 13, 28, 1),  # group width 8
    "regnet_y_400mf-s4": (440, 55, 7, 1),
    "resnext50_32x4d-s1": (128, 32, 56, 1),  # group width 4
    "resnext50_32x4d-s2": (256, 32, 28, 2),  # 8
    "resnext50_32x4d-s3": (512, 32, 14, 1),  # 16
    "resnext50_32x4d-s4": (1024, 32, 7, 1),  # 32
}


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("layer", sorted(ZOO))
def test_select_kernels_picks_grouped_for_the_zoos_layers(layer, target):
    c, groups, size, stride = ZOO[layer]
    graph = load([conv("e", c, 1, ["x"], 1), conv("g", c, 3, ["e"], groups, stride=stride, padding=1),
                  conv("p", c, 1, ["g"], 1)], (c, size * stride, size * stride))
    _, plan = kernel_plan(graph, target)
    choice = plan["g"]
    assert choice.kernel == "grouped" and choice.template == "ops/conv2d_grouped.c.j2"
    assert choice.params.VL == grouped_lanes(c // groups, target.lanes)
    assert choice.params.parallel  # large enough for the thread pool: items over groups x rows x filter blocks


def test_vector_widths_per_target():
    assert [grouped_lanes(w, AVX512.lanes) for w in (1, 2, 4, 6, 8, 12, 16, 24, 32, 64)] == [4, 4, 4, 4, 8, 4, 16, 8,
                                                                                             16, 16]
    assert [grouped_lanes(w, AVX2.lanes) for w in (1, 2, 4, 6, 8, 12, 16, 24, 32, 64)] == [4, 4, 4, 4, 8, 4, 8, 8, 8, 8]


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
def test_register_blocks_fit_the_targets_registers(target):
    """KV·PB accumulators + one input value fit the vector registers (16 ymm or 32 zmm), and with 32 the KV
    weights too; with 16, 4 × 3 blocks read theirs as FMA memory operands (common.block_shape)."""
    shapes = set()  # the KV seen
    for width in WIDTHS:
        graph = load([conv("g", 96, 3, ["x"], 96 // width, padding=1)], (96, 30, 30))
        p = kernel_plan(graph, target)[1]["g"].params
        held = p.KV if target.vector_registers >= 32 else 0
        assert p.KV * p.PB + held + 1 <= target.vector_registers, (width, p.KV, p.PB)
        shapes.add(p.KV)
    assert 4 in shapes if target.vector_registers < 32 else 2 in shapes  # the widths with 4 vectors a group


def test_avx2_groups_of_two_vectors_take_two_by_four_blocks_under_wide_kernels():
    """AVX2, 16-filter groups (2 vectors, regnet_x_400mf's): a 3×3 conv takes the direct kernel's 2 × 4 blocks
    (kernels.direct.narrow_wide_kernel), a 1×1 conv keeps 2 × 6."""
    graph = load([conv("g", 96, 3, ["x"], 6, padding=1), {"name": "r", "op": "relu", "inputs": ["g"]},
                  conv("p", 96, 1, ["r"], 6)], (96, 28, 30))
    plan = kernel_plan(graph, AVX2)[1]
    wide, one = plan["r"].params, plan["p"].params
    assert plan["r"].kernel == plan["p"].kernel == "grouped"
    assert (wide.KV, wide.PB) == (2, 4) and (one.KV, one.PB) == (2, 6)
    compile_and_check(graph, batch=2, march=AVX2)


def test_depthwise_and_groups_of_one_are_not_its():
    graph = load([conv("d", 16, 3, ["x"], 16, padding=1), conv("g", 16, 1, ["d"], 1),
                  conv("m", 32, 3, ["g"], 16, padding=1)], (16, 8, 8))
    plan = kernel_plan(graph, AVX2)[1]
    assert {n: c.kernel for n, c in plan.choices.items()} == {"d": "depthwise", "g": "direct", "m": "grouped"}


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
def test_a_cxhxw_output_is_transposed_in_registers_and_without_shuffles_too(target):
    """A C×H×W output of whole vectors is stored through VL×VL tiles transposed in registers (a block of n pixels
    as chunks of VL, the last zero-filled); compilers without __builtin_shufflevector transpose through memory."""
    layers = [conv("g", 32, 3, ["x"], 4, padding=1), {"name": "sum", "op": "add", "inputs": ["g", "x"]},
              {"name": "act", "op": "silu", "inputs": ["sum"]}, conv("h", 32, 3, ["x"], 16, padding=1)]
    graph = load(layers, (32, 5, 23), outputs=["act", "h"])
    plan = kernel_plan(graph, target)[1]
    fused = next(n for n in plan.choices if n != "h")
    p = plan[fused].params
    assert p.TRANSPOSE_STORE and plan[fused].layouts == (0, 0, 0)
    assert any(c.partial for seg in p.segments for c in seg.chunks)
    assert not plan["h"].params.TRANSPOSE_STORE  # groups of 2 filters: part-empty vectors, a scalar store each
    for cflags in ([], ["-DCONVC_HAS_SHUFFLE=0"]):
        compile_and_check(graph, march=target, cflags=cflags)
