"""select_kernels (compiler/kernels/select.py) on its own: the kernel each layer gets on AVX2 (8 lanes, 16 registers)
and AVX-512 (16 lanes, 32 registers), forced kernels and their errors, the hand-offs made once the layouts are
known, and the frozen plan. The expected kernels follow from the rules the kernels document (README
"Performance", compiler/kernels/*.py), not from running the selection; every plan also passes verify_kernel_plan.
"""
from __future__ import annotations

import dataclasses
import json
import warnings

import pytest

import compiler
from compiler import ModelError
from compiler.kernels import KERNELS
from compiler.kernels.common import STACK_BUFFER_BYTES
from compiler.kernels.rowvec import ROWVEC_MAX_CHANNELS
from compiler.kernels.select import select_kernels
from compiler.passes import optimize
from compiler.verify import verify_kernel_plan
from conftest import AVX2, AVX512, TARGET_IDS, TARGETS, model_dict

each_target = pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)


def load(layers, shape):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", compiler.ConvcWarning)
        return compiler.load(model_dict(layers, shape=shape))


def plan_of(layers, shape, target, opt_level=2, kernels=None):
    graph = optimize(load(layers, shape), opt_level)
    plan = select_kernels(graph, target, opt_level, kernels)
    verify_kernel_plan(graph, plan)
    return plan


def kernels_of(plan) -> dict:
    return {name: choice.kernel for name, choice in plan.choices.items()}


def conv(name, filters, kernel=1, **kw):
    return {"name": name, "op": "conv2d", "filters": filters, "kernel": kernel, **kw}


# ---------------------------------------------------------------- one layer: the same kernel on either target
ONE_LAYER = [
    # (input C×H×W, layer, kernel, why)
    ((3, 16, 16), conv("l", 16, 3, padding=1), "rowvec", "3 input channels: vectors along the output row"),
    ((ROWVEC_MAX_CHANNELS, 16, 16), conv("l", 16, 3, padding=1), "rowvec", "at most 8 input channels"),
    ((6, 14, 14), conv("l", 16, 5), "direct", "6·5·5 = 150 taps on 10-output rows: the direct kernel"),
    ((3, 227, 227), conv("l", 64, 11, stride=4), "direct", "AlexNet's stem: 363 taps on 55-output rows"),
    ((3, 230, 230), conv("l", 64, 7, stride=2), "rowvec", "ResNet's stem: 147 taps, but 112-output rows"),
    ((ROWVEC_MAX_CHANNELS + 1, 16, 16), conv("l", 16, 3, stride=2, padding=1), "direct",
     "9 input channels, stride 2: no Winograd"),
    ((16, 16, 16), conv("l", 16, 3, padding=2, dilation=2), "direct", "dilated: no Winograd"),
    ((32, 56, 56), conv("l", 32, 3, padding=1), "winograd", "3×3 stride 1 on a large map: 2.25× fewer multiplies"),
    ((16, 16, 16), conv("l", 32, 1), "pointwise", "1×1 on 16·16 = 256 pixels"),
    ((16, 15, 17), conv("l", 32, 1), "direct", "1×1 on 255 < 256 pixels: vectors along the channels"),
    ((16, 32, 32), conv("l", 32, 1, stride=2, padding=1), "direct",
     "1×1 stride 2, padded: no matrix product over the pixels (unpadded, it is subsampled first)"),
    ((16, 16, 16), conv("l", 32, 1, padding=1), "direct", "1×1 padded: the output map is not the input's"),
    ((16, 16, 16), conv("l", 16, 3, padding=1, groups=16), "depthwise", "groups = C = K"),
    ((16, 16, 16), conv("l", 32, 3, padding=1, groups=2), "grouped", "grouped, not depthwise: vectors within a group"),
    ((16, 16, 16), conv("l", 32, 3, padding=1, groups=16), "grouped", "groups = C < K: two filters a group"),
    ((3, 8, 8), {"name": "l", "op": "maxpool2d", "kernel": 2}, "maxpool_interior", "every window inside"),
    ((3, 9, 9), {"name": "l", "op": "maxpool2d", "kernel": 3, "stride": 2, "padding": 1}, "maxpool_padded",
     "windows reach the padding"),
    ((3, 9, 9), {"name": "l", "op": "maxpool2d", "kernel": 3, "stride": 2}, "maxpool_padded",
     "3×3/2 windows inside, but overlapping: the row maxima first"),
    ((3, 9, 9), {"name": "l", "op": "maxpool2d", "kernel": 3, "stride": 3}, "maxpool_interior",
     "3×3/3: strided windows that do not overlap"),
    ((3, 5, 5), {"name": "l", "op": "maxpool2d", "kernel": 2, "ceil_mode": True}, "maxpool_padded",
     "ceil_mode: the last window runs past the input"),
    ((3, 8, 8), {"name": "l", "op": "avgpool2d", "kernel": 2}, "avgpool_interior", "average pools: literal interior windows"),
    ((3, 8, 8), {"name": "l", "op": "avgpool2d", "kernel": 3, "stride": 1, "padding": 1, "count_include_pad": False},
     "avgpool_interior", "padded windows, counts without the padding"),
    ((3, 8, 8), {"name": "l", "op": "global_avgpool"}, "global_pool", "global pools read either layout"),
    ((3, 8, 8), {"name": "l", "op": "global_maxpool"}, "global_pool", "global pools read either layout"),
    ((3, 8, 8), {"name": "l", "op": "dense", "units": 5}, "dense_vector", "dense: fewer units than a vector's lanes"),
    ((3, 8, 8), {"name": "l", "op": "dense", "units": 20}, "dense_blocked", "dense: vectors along the units"),
    ((3, 8, 8), {"name": "l", "op": "softmax"}, "plain", "element-wise ops: their own loops"),
    ((3, 8, 8), {"name": "l", "op": "add", "inputs": ["x", "x"]}, "plain", "element-wise ops: their own loops"),
]


@each_target
@pytest.mark.parametrize("shape, layer, kernel, why", ONE_LAYER, ids=[c[3] for c in ONE_LAYER])
def test_the_kernel_of_one_layer(shape, layer, kernel, why, target):
    plan = plan_of([layer], shape, target)
    assert kernels_of(plan) == {"l": kernel}, why
    assert plan["l"].layouts == (0,) * len(plan["l"].layouts)  # the model's input and output: C×H×W


@each_target
@pytest.mark.parametrize("opt_level", [0, 1])
def test_levels_0_and_1_take_the_plain_loops(target, opt_level):
    plan = plan_of([{"inputs": ["x"]} | s[1] | {"name": f"l{i}"} for i, s in enumerate(ONE_LAYER) if s[0] == (3, 8, 8)]
                   + [conv("c", 16, 3, padding=1)], (3, 8, 8), target, opt_level)
    assert set(kernels_of(plan).values()) == {"plain"} and not plan.layouts
    assert all(c.reason == KERNELS["plain"].doc for c in plan.choices.values())


@each_target
def test_row_copies_too_big_for_the_stack_take_the_direct_kernel(target):
    """rowvec copies C·KH input rows (W + padding floats each) onto the stack: 8·7·(450 + 6)·4 bytes = 127 KiB is
    more than the budget, 8·7·(300 + 6)·4 = 67 KiB is not."""
    assert 4 * 8 * 7 * 456 > STACK_BUFFER_BYTES > 4 * 8 * 7 * 306 + 4 * 8 * 7 * target.lanes
    layer = conv("l", 16, 7, padding=3)
    assert kernels_of(plan_of([layer], (8, 8, 450), target)) == {"l": "direct"}
    assert kernels_of(plan_of([layer], (8, 8, 300), target)) == {"l": "rowvec"}


def test_views_inputs_and_constants_have_no_choice():
    plan = plan_of([{"name": "k", "op": "constant", "shape": [3, 1, 1]},
                    {"name": "m", "op": "mul", "inputs": ["x", "k"]}, {"name": "f", "op": "flatten"},
                    {"name": "d", "op": "dropout"}, {"name": "fc", "op": "dense", "units": 2}], (3, 4, 4), AVX2, 0)
    assert set(plan.choices) == {"m", "fc"}


# ---------------------------------------------------------------- layouts and the hand-offs made once they are known
def mobile_block(channels):
    """1×1 expand, depthwise, 1×1 project, then a 3×3 stride-2 conv: every tensor between them has a producer and
    readers that run their vectors along the channels."""
    return [conv("e", channels), conv("d", channels, 3, groups=channels, padding=1), conv("p", channels),
            conv("z", 16, 3, stride=2, padding=1)]


@each_target
def test_a_1x1_conv_between_blocked_tensors_is_handed_to_the_direct_kernel(target):
    """On 16·16 = 256 pixels a 1×1 conv wants the pointwise kernel (vectors along the pixels); once its output is
    channel-blocked, the direct kernel (vectors along the channels) takes it."""
    plan = plan_of(mobile_block(32), (16, 16, 16), target)
    lanes = target.lanes
    assert dict(plan.layouts) == {"e": lanes, "d": lanes, "p": lanes}
    assert kernels_of(plan) == {"e": "direct", "d": "depthwise", "p": "direct", "z": "direct"}
    assert plan["e"].layouts == (0, lanes) and plan["p"].layouts == (lanes, lanes) and plan["z"].layouts == (lanes, 0)
    assert "channel-blocked" in plan["p"].reason
    assert plan["d"].template == "ops/conv2d_depthwise_blocked.c.j2"


def test_channels_block_only_in_whole_vectors_of_the_target():
    """24 channels are three 8-lane vectors on AVX2, one and a half 16-lane vectors on AVX-512."""
    assert dict(plan_of(mobile_block(24), (16, 16, 16), AVX2).layouts) == {"e": 8, "d": 8, "p": 8}
    plan = plan_of(mobile_block(24), (16, 16, 16), AVX512)
    assert not plan.layouts
    assert kernels_of(plan) == {"e": "pointwise", "d": "depthwise", "p": "pointwise", "z": "direct"}


@each_target
def test_a_depthwise_plane_too_big_for_the_stack_is_handed_to_the_plain_kernel(target):
    """The C×H×W depthwise kernel copies one zero-padded plane (H + 2)·(W + 2) floats to the stack: 152·182·4 bytes
    = 108 KiB is more than the budget (and takes the plain loops), 102·102·4 = 41 KiB is not."""
    assert 152 * 182 * 4 > STACK_BUFFER_BYTES > 102 * (102 + 2 * target.lanes) * 4
    layer = conv("l", 2, 3, groups=2, padding=1)
    big = plan_of([layer], (2, 150, 180), target)
    assert kernels_of(big) == {"l": "plain"} and "stack" in big["l"].reason
    assert kernels_of(plan_of([layer], (2, 100, 100), target)) == {"l": "depthwise"}


# ---------------------------------------------------------------- forced kernels
NET = [conv("a", 16, 3, padding=1), {"name": "a_act", "op": "relu"}, conv("b", 16, 3, padding=1, groups=16),
       conv("c", 32, 1), {"name": "mp", "op": "maxpool2d", "kernel": 2}, {"name": "f", "op": "flatten"},
       {"name": "fc", "op": "dense", "units": 4}]


@each_target
def test_forcing_a_kernel_for_one_layer(target):
    free = plan_of(NET, (3, 16, 16), target)
    assert kernels_of(free)["c"] == "pointwise"  # 1×1 on 256 pixels, written C×H×W (its reader is a max-pool)
    forced = plan_of(NET, (3, 16, 16), target, kernels={"c": "direct"})
    assert forced["c"].kernel == "direct" and forced["c"].reason == "forced"
    assert {n: k for n, k in kernels_of(forced).items() if n != "c"} == {n: k for n, k in kernels_of(free).items()
                                                                         if n != "c"}


@each_target
def test_forcing_by_the_name_of_a_merged_layer(target):
    """a + a_act is one layer named a_act after the passes; forcing "a" forces it."""
    plan = plan_of(NET, (3, 16, 16), target, kernels={"a": "direct"})
    assert "a" not in plan.choices and plan["a_act"].kernel == "direct" and plan["a_act"].reason == "forced"


@each_target
def test_forcing_a_kernel_for_every_layer_it_can_take(target):
    plan = plan_of(NET, (3, 16, 16), target, kernels={"*": "direct"})
    # direct takes the groups = 1 convs (a + a_act, c); the depthwise conv, the pool and the dense keep theirs
    assert kernels_of(plan) == {"a_act": "direct", "b": "depthwise", "c": "direct", "mp": "maxpool_interior",
                                "fc": "dense_vector"}
    assert [n for n, c in plan.choices.items() if c.reason == "forced"] == ["a_act", "c"]
    plain = plan_of(NET, (3, 16, 16), target, kernels={"*": "plain"})
    assert set(kernels_of(plain).values()) == {"plain"} and not plain.layouts


@pytest.mark.parametrize("kernels, opt_level, fragments", [
    ({"b": "direct"}, 2, ["'b'", "forced kernel 'direct' cannot compute this layer", "groups = 1 only", "groups = 16"]),
    ({"mp": "direct"}, 2, ["'mp'", "kernel 'direct' computes conv2d, fused_conv2d, not maxpool2d"]),
    ({"c": "fastest"}, 2, ["kernels['c'] = 'fastest' is not a kernel", "known:", "direct", "winograd"]),
    ({"nowhere": "direct"}, 2, ["kernels['nowhere']", "no layer 'nowhere'"]),
    ({"c": "direct"}, 1, ["kernel 'direct' is used from opt level 2", "opt level 1"]),
], ids=["cannot-take", "another-op", "unknown-kernel", "unknown-layer", "opt-level-too-low"])
def test_forcing_errors_name_the_layer_and_the_reason(kernels, opt_level, fragments):
    graph = optimize(load(NET, (3, 16, 16)), opt_level)
    with pytest.raises(ModelError) as caught:
        select_kernels(graph, AVX512, opt_level, kernels)
    for fragment in fragments:
        assert fragment in str(caught.value), (fragment, str(caught.value))


@each_target
def test_a_forced_kernel_the_layouts_hand_off_is_an_error(target):
    """Forcing pointwise on a 1×1 conv whose tensors end up channel-blocked cannot be honoured."""
    graph = optimize(load(mobile_block(32), (16, 16, 16)), 2)
    with pytest.raises(ModelError, match="'p'.*forced kernel 'pointwise' cannot compute this layer.*channel-blocked"):
        select_kernels(graph, target, 2, {"p": "pointwise"})


def test_forcing_the_plain_kernel_works_at_every_level():
    for level in (0, 1, 2):
        plan = plan_of(NET, (3, 16, 16), AVX2, level, kernels={"c": "plain"})
        assert plan["c"].kernel == "plain" and plan["c"].reason == "forced"


# ---------------------------------------------------------------- the plan is a frozen record
def test_the_plan_is_frozen_and_leaves_the_graph_alone():
    graph = optimize(load(NET, (3, 16, 16)), 2)
    layers = [(layer, graph.shape(layer.name)) for layer in graph.layers()]
    plan = select_kernels(graph, AVX512, 2)
    assert [(layer, graph.shape(layer.name)) for layer in graph.layers()] == layers
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.opt_level = 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan["c"].kernel = "direct"
    with pytest.raises(TypeError):
        plan.choices["c"] = plan["a_act"]
    with pytest.raises(TypeError):
        plan.layouts["c"] = 16
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan["c"].params.K = 1  # the record the template renders


def test_the_plan_as_data():
    plan = plan_of(mobile_block(32), (16, 16, 16), AVX2)
    data = json.loads(plan.to_json())
    assert data["opt_level"] == 2 and "8 lanes" in data["target"]
    assert [(d["layer"], d["kernel"], d["layouts"]) for d in data["layers"]] == [
        ("e", "direct", ["CxHxW", "C/8"]), ("d", "depthwise", ["C/8", "C/8"]), ("p", "direct", ["C/8", "C/8"]),
        ("z", "direct", ["C/8", "CxHxW"])]
    assert "C/8" in str(plan) and "depthwise" in str(plan)


@pytest.mark.parametrize("registers,hw,ow,kv,pb,row", [
    (16, 49, 7, 2, 6, 49),  # AVX2: 7 × (6 + 1) -> 8 × 6 + 1
    (16, 49, 7, 4, 3, 49),  # AVX2's 4 × 3 blocks: 7 × (3 + 3 + 1) -> 16 × 3 + 1 (past 16 blocks)
    (16, 784, 28, 4, 3, 56),  # 28 × (9 × 3 + 1) -> 14 × 18 × 3 + 2
    (32, 49, 7, 2, 12, 7),  # AVX-512: a 7-pixel block keeps 14 accumulators: rows stay
    (32, 196, 14, 2, 12, 28),  # 14 × (12 + 2) -> 7 × (12 + 12 + 4)
    (32, 3136, 56, 2, 12, 56),  # no better cut: rows stay
    (16, 13 * 17, 17, 1, 12, 17),  # 221 = 13 × 17 only
])
def test_pixel_rows_cut_a_1x1_convs_pixels_where_blocks_fill_better(registers, hw, ow, kv, pb, row):
    from compiler.kernels.direct import block_cost, pixel_rows
    h = hw // ow
    geometry = {"H": h, "W": ow, "OH": h, "OW": ow, "OHW": hw, "row_lo": (0,) * h, "row_hi": (1,) * h,
                "col_lo": (0,) * ow, "col_hi": (1,) * ow}
    cut = pixel_rows(geometry, kv, pb)
    assert cut["OW"] == cut["W"] == row and cut["OH"] * cut["OW"] == hw and cut["OHW"] == hw
    assert len(cut["row_lo"]) == cut["OH"] and len(cut["col_hi"]) == row
    assert hw // row * block_cost(row, kv, pb) <= h * block_cost(ow, kv, pb)
