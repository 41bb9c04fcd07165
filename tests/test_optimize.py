"""Optimization levels: the graph passes, the fast kernels, threads, profiling builds.

Correctness is always against the interpreter on the UNOPTIMIZED graph (rtol 1e-4, atol 1e-5, from
conftest), or against PyTorch for the fused ops' own definition; speed is measured by `python -m bench`,
never here.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest

import compiler
import runtime
from compiler.passes import PIPELINES, optimize
from conftest import (AVX512, EXAMPLES, ROOT, TARGET_IDS, TARGETS, compile_and_check, model_dict, random_input,
                      runnable)

OPT_LEVELS = sorted(PIPELINES)


def load_quietly(desc):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", compiler.ConvcWarning)
        return compiler.load(desc)


def conv(**kw):
    return {"op": "conv2d", **kw}


def check(graph, opt_level, batch=2, seed=0, **kw):
    model, got, _ = compile_and_check(graph, batch, seed, opt_level=opt_level, **kw)
    return model, got


# ---------------------------------------------------------------- graph passes
@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_passes_preserve_the_function_of_every_example(path):
    graph = load_quietly(path)
    opt = optimize(graph, 1)
    x = random_input(graph.shape(graph.inputs[0]), 2, 5)
    ref = compiler.interpret(graph, {graph.inputs[0]: x}, dtype=np.float64)
    got = compiler.interpret(opt, {opt.inputs[0]: x}, dtype=np.float64)
    for name in graph.outputs:  # folded weights are stored as float32: rounding of about 1e-7 relative
        np.testing.assert_allclose(got[name], ref[name], rtol=2e-6, atol=1e-7)
    ops = [layer.op for layer in opt.layers()]
    assert "batchnorm" not in ops and "dropout" not in ops and "relu" not in ops, ops
    assert len(ops) < len(graph.layers())


def test_passes_do_not_change_the_input_graph():
    graph = load_quietly(EXAMPLES / "resnet_small.yaml")
    before = ([(layer.name, layer.op, layer.inputs) for layer in graph.layers()], dict(graph.weights))
    optimize(graph, 1)
    assert [(layer.name, layer.op, layer.inputs) for layer in graph.layers()] == before[0]
    assert graph.weights.keys() == before[1].keys()
    assert all(graph.weights[k] is before[1][k] for k in graph.weights)


def test_residual_block_becomes_one_fused_conv_per_conv():
    graph = load_quietly(model_dict([
        conv(name="c1", filters=4, kernel=3, padding=1, bias=False), {"name": "bn1", "op": "batchnorm"},
        {"name": "r1", "op": "relu"},
        conv(name="c2", filters=3, kernel=3, padding=1), {"name": "bn2", "op": "batchnorm"},
        {"name": "sum", "op": "add", "inputs": ["bn2", "x"]}, {"name": "out", "op": "relu6"}], shape=(3, 6, 6)))
    opt = optimize(graph, 1)
    layers = {layer.name: layer for layer in opt.layers()}
    assert set(layers) == {"x", "r1", "out"}
    assert layers["r1"].op == "fused_conv2d" and layers["r1"].attrs.act_min == 0.0
    assert layers["out"].inputs == ("r1", "x")
    assert (layers["out"].attrs.act_min, layers["out"].attrs.act_max) == (0.0, 6.0)
    for level in OPT_LEVELS:
        check(graph, level)


@pytest.mark.parametrize("layers,outputs,unfused", [
    # the conv's output is read twice: no fusion
    ([conv(name="c", filters=3, kernel=3), {"name": "r", "op": "relu"}, {"name": "t", "op": "tanh", "inputs": ["c"]}],
     None, {"c", "r"}),
    # the conv is a model output: its batchnorm cannot take its place
    ([conv(name="c", filters=3, kernel=3), {"name": "bn", "op": "batchnorm"}], ["c", "bn"], {"c", "bn"}),
    # add(c, c): the conv is both operands
    ([conv(name="c", filters=3, kernel=3), {"name": "s", "op": "add", "inputs": ["c", "c"]}], None, {"c", "s"}),
    # three operands
    ([conv(name="c", filters=3, kernel=3, padding=1), conv(name="d", filters=3, kernel=3, padding=1, inputs=["x"]),
      {"name": "s", "op": "add", "inputs": ["c", "d", "x"]}], None, {"s"}),
    # a second activation stays a layer of its own
    ([conv(name="c", filters=3, kernel=3), {"name": "r", "op": "relu"}, {"name": "k", "op": "clip", "max": 0.5}],
     None, {"k"}),
    # dropout as an output keeps its name
    ([conv(name="c", filters=3, kernel=3), {"name": "d", "op": "dropout"}], ["d"], {"d"}),
])
def test_passes_leave_what_they_must(layers, outputs, unfused):
    extra = {"outputs": outputs} if outputs else {}
    graph = load_quietly(model_dict(layers, shape=(3, 6, 6), **extra))
    opt = optimize(graph, 1)
    ops = {layer.name: layer.op for layer in opt.layers()}
    for name in unfused:
        assert ops.get(name) == graph.layer(name).op, ops
    for level in OPT_LEVELS:
        check(graph, level)


def test_dense_epilogue_and_batchnorm_fold():
    graph = load_quietly(model_dict([
        {"name": "d1", "op": "dense", "units": 6, "bias": False}, {"name": "bn", "op": "batchnorm"},
        {"name": "a", "op": "leaky_relu", "negative_slope": 0.2},
        {"name": "d2", "op": "dense", "units": 6}, {"name": "s", "op": "add", "inputs": ["d2", "a"]},
        {"name": "c", "op": "clip", "min": -0.25}], shape=(9,)))
    opt = optimize(graph, 1)
    assert [layer.op for layer in opt.layers()] == ["input", "fused_dense", "fused_dense"]
    for level in OPT_LEVELS:
        check(graph, level, batch=3)


def test_fused_conv_reference_is_conv_plus_residual_then_activation_as_in_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    graph = load_quietly(model_dict([
        conv(name="c", filters=4, kernel=3, stride=2, padding=1), {"name": "s", "op": "add", "inputs": ["c", "r"]},
        {"name": "o", "op": "leaky_relu", "negative_slope": 0.1},
        conv(name="r", filters=4, kernel=1, stride=2, inputs=["x"])], shape=(3, 7, 7), outputs=["o"]))
    opt = optimize(graph, 1)
    (fused,) = [layer for layer in opt.layers() if layer.op == "fused_conv2d" and layer.name == "o"]
    x = random_input((3, 7, 7), 2, 1).astype(np.float64)
    res = np.random.default_rng(2).standard_normal((2, 4, 4, 4))
    w = opt.layer_weights("o")
    got = fused.spec.reference(fused, [x, res], w)
    t = F.conv2d(torch.from_numpy(x), torch.from_numpy(w["weight"].astype(np.float64)),
                 torch.from_numpy(w["bias"].astype(np.float64)), stride=2, padding=1)
    want = F.leaky_relu(t + torch.from_numpy(res), 0.1).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_internal_ops_cannot_appear_in_a_model_file():
    with pytest.raises(compiler.ModelError, match="unknown op 'fused_conv2d'"):
        compiler.load(model_dict([{"op": "fused_conv2d", "filters": 2, "kernel": 1}]))


# ---------------------------------------------------------------- reduce_to_global_pool, fuse_channel_shuffle
@pytest.mark.parametrize("op,pool", [("reduce_mean", "global_avgpool"), ("reduce_max", "global_maxpool")])
@pytest.mark.parametrize("keepdims", [True, False])
def test_spatial_reductions_become_global_pools(op, pool, keepdims):
    graph = load_quietly(model_dict([conv(name="c", filters=16, kernel=1), {"name": "r", "op": op, "axes": [-2, 3],
                                                                             "keepdims": keepdims}], shape=(16, 5, 6)))
    opt = optimize(graph, 1)
    ops = [(layer.name, layer.op) for layer in opt.layers()]
    assert ops == [("x", "input"), ("c", "conv2d")] + ([("r", pool)] if keepdims else [("r_pool", pool),
                                                                                        ("r", "flatten")])
    assert opt.outputs == ["r"] and opt.shape("r") == graph.shape("r")
    # The same kernel and layouts as a model written with the global pool.
    written = load_quietly(model_dict([conv(name="c", filters=16, kernel=1), {"name": "r", "op": pool}],
                                      shape=(16, 5, 6)))
    for target in TARGETS:
        plans = [compiler.plan_kernels(g, march=target).choices for g in (graph, written)]
        assert [(c.kernel, c.layouts) for c in plans[0].values()] == [(c.kernel, c.layouts) for c in plans[1].values()]
    for level in OPT_LEVELS:
        check(graph, level)


@pytest.mark.parametrize("layer", [{"op": "reduce_sum", "axes": [2, 3]}, {"op": "reduce_mean", "axes": [1, 2, 3],
                                                                         "keepdims": True},
                                   {"op": "reduce_max", "axes": [3]}], ids=["sum", "with-channels", "width-only"])
def test_other_reductions_stay(layer):
    graph = load_quietly(model_dict([{"name": "r", **layer}], shape=(3, 4, 5)))
    assert [layer.op for layer in optimize(graph, 1).layers()] == ["input", layer["op"]]


# ---------------------------------------------------------------- subsample_strided_pointwise (level 2)
def _downsample_block(first=True):
    """A bottleneck's downsampling branch: an unpadded stride-2 1×1 conv added to a stride-2 3×3 conv's output."""
    pre = [conv(name="pre", filters=16, kernel=1), {"name": "pr", "op": "relu"}] if first else []
    src = "pr" if first else "x"
    return pre + [conv(name="a", filters=24, kernel=3, stride=2, padding=1, inputs=[src]),
                  conv(name="ds", filters=24, kernel=1, stride=2, inputs=[src]),
                  {"name": "s", "op": "add", "inputs": ["a", "ds"]}, {"name": "o", "op": "relu"}]


def test_strided_pointwise_convs_become_a_subsample_and_a_stride_1_conv():
    graph = load_quietly(model_dict(_downsample_block(), shape=(8, 15, 13)))
    assert not any(layer.op == "avgpool2d" for layer in optimize(graph, 1).layers())  # level 1: nothing to gain
    opt = optimize(graph, 2)
    subsamples = [layer for layer in opt.layers() if layer.op == "avgpool2d"]
    assert [(s.attrs.kernel, s.attrs.stride, s.inputs) for s in subsamples] == [((1, 1), (2, 2), ("pr",))]
    assert opt.shape(subsamples[0].name) == (16, 8, 7)  # (15 - 1)/2 + 1, (13 - 1)/2 + 1
    (reader,) = opt.consumers(subsamples[0].name)
    assert opt.layer(reader).attrs.kernel == (1, 1) and opt.layer(reader).attrs.stride == (1, 1)
    convs = [layer for layer in opt.layers() if layer.op in ("conv2d", "fused_conv2d")]
    assert [c.attrs.stride for c in convs if c.attrs.kernel == (3, 3)] == [(2, 2)]  # the 3×3 keeps its stride
    assert opt.outputs == ["o"] and opt.shape("o") == graph.shape("o")


@pytest.mark.parametrize("layers, shape, rewritten", [
    ([conv(name="c", filters=8, kernel=1, stride=2, padding=1)], (4, 9, 9), False),  # padded: the padding is read
    ([conv(name="c", filters=8, kernel=3, stride=2)], (4, 9, 9), False),
    ([conv(name="c", filters=8, kernel=[1, 3], stride=2)], (4, 9, 9), False),
    ([conv(name="c", filters=8, kernel=1)], (4, 9, 9), False),
    ([conv(name="c", filters=8, kernel=1, stride=[1, 3])], (4, 9, 10), True),
    ([conv(name="c", filters=8, kernel=1, stride=2, groups=2)], (4, 9, 9), False),  # the grouped kernel's own
], ids=["padded", "3x3", "1x3", "stride-1", "stride-1x3", "grouped"])
def test_only_unpadded_strided_1x1_convs_are_subsampled(layers, shape, rewritten):
    graph = load_quietly(model_dict(layers, shape=shape))
    opt = optimize(graph, 2)
    assert any(layer.op == "avgpool2d" for layer in opt.layers()) == rewritten
    assert opt.shape("c") == graph.shape("c") and opt.outputs == ["c"]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("layers, shape", [
    (_downsample_block(), (8, 15, 13)),  # channel-blocked input, odd sizes, the add fused
    (_downsample_block(first=False), (8, 16, 16)),  # the model's C×H×W input
    ([conv(name="pre", filters=32, kernel=1), conv(name="c", filters=64, kernel=1, stride=[2, 3])], (16, 28, 29)),
    ([conv(name="pre", filters=512, kernel=1), conv(name="c", filters=40, kernel=1, stride=2), {"op": "relu"}],
     (8, 14, 14)),  # many channels, a 7×7 output re-cut into one row
], ids=["bottleneck-odd", "from-the-input", "stride-2x3", "7x7-out"])
def test_subsampled_pointwise_convs_match_the_interpreter(layers, shape, target, threads):
    graph = load_quietly(model_dict(layers, shape=shape))
    assert any(layer.op == "avgpool2d" for layer in optimize(graph, 2).layers())
    check(graph, 2, batch=2, seed=4, threads=threads, march=target)


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("blocked", [False, True], ids=["from-the-input", "channel-blocked"])
def test_the_subsample_keeps_nan_and_infinity(target, blocked):
    """The subsample copies its pixels: a NaN in one channel of a read pixel makes that output pixel NaN (a max
    pool's compare would have dropped it for -inf, and the conv would give ±inf there)."""
    pre = [conv(name="pre", filters=16, kernel=1)] if blocked else []
    graph = load_quietly(model_dict(pre + [conv(name="c", filters=8, kernel=1, stride=2)], shape=(16, 10, 10)))
    model = compiler.compile(graph, march=runnable(target))
    x = random_input(graph.shape("x"), 1, 0)
    x[0, 3, 4, 6] = np.nan  # read at stride 2: output pixel (2, 3)
    x[0, 5, 1, 1] = np.nan  # not read
    x[0, 2, 8, 0] = np.inf  # read: output pixel (4, 0)
    got = model.run({"x": x})["c"]
    ref = compiler.interpret(graph, {"x": x}, dtype=np.float64)["c"]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    assert np.isnan(got[0, :, 2, 3]).all() and not np.isnan(got[0, :, 0, 0]).any()
    if not blocked:  # (after the pre conv, the inf is ±inf in all channels, and their sum NaN)
        assert np.isinf(got[0, :, 4, 0]).all()
    np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))
    finite = np.isfinite(ref)
    np.testing.assert_allclose(got[finite], ref[finite], rtol=1e-4, atol=1e-5)


def _shuffle(groups: int, perm=(0, 2, 1, 3, 4), back=None, **extra):
    c, h, w = 6, 4, 5
    return [{"name": "g", "op": "reshape", "shape": [groups, c // groups, h, w], **extra},
            {"name": "t", "op": "transpose", "perm": list(perm)},
            {"name": "back", "op": "reshape", "shape": back or [c, h, w]}, {"name": "out", "op": "relu"}]


@pytest.mark.parametrize("layers,outputs,fused", [
    (_shuffle(2), None, {"back": ("channel_shuffle", ("g", "t", "back"))}),
    (_shuffle(3), None, {"back": ("channel_shuffle", ("g", "t", "back"))}),
    # the grouped view is read elsewhere too: it stays, the shuffle still becomes one layer
    (_shuffle(2) + [{"name": "o2", "op": "relu", "inputs": ["g"]}], None, {"back": ("channel_shuffle", ("t", "back")),
                                                                          "g": ("reshape", ())}),
    # the transposed tensor is a model output: nothing changes
    (_shuffle(2), ["out", "t"], {"t": ("transpose", ()), "back": ("reshape", ())}),
    # another permutation, or another shape at the end: not a channel shuffle
    (_shuffle(2, perm=(0, 1, 2, 4, 3)), None, {"t": ("transpose", ()), "back": ("reshape", ())}),
    (_shuffle(2, back=[6, 20]), None, {"t": ("transpose", ()), "back": ("reshape", ())}),
], ids=["g2", "g3", "view-read-twice", "transpose-is-output", "other-perm", "other-shape"])
def test_channel_shuffle_is_recognized(layers, outputs, fused):
    graph = load_quietly(model_dict(layers, shape=(6, 4, 5), **({"outputs": outputs} if outputs else {})))
    opt = optimize(graph, 1)
    for name, (op, merged) in fused.items():
        assert (opt.layer(name).op, opt.layer(name).sources) == (op, merged or (name,))
    for level in OPT_LEVELS:
        check(graph, level)


# ---------------------------------------------------------------- fast kernels
# Shapes that reach every branch of the fast kernels: two channel vectors per block (K = 32, 40),
# a partial last vector, interior loops of several blocks, border blocks, taps that miss whole blocks,
# rows-outer loop order (input > 512 KiB), threads, depthwise with stride, dilation and residual.
FAST_CASES = {
    "k6-half-vectors": ([conv(name="c", filters=6, kernel=5, padding=2), {"op": "relu"}], (1, 12, 28)),
    "k32-wide-rows": ([conv(name="c", filters=32, kernel=3, padding=1)], (5, 9, 40)),
    "k40-partial-vector": ([conv(name="c", filters=40, kernel=3, padding=1)], (3, 6, 14)),
    "k20-kb2-partial": ([conv(name="c", filters=20, kernel=3, stride=2, padding=2, dilation=2)], (4, 11, 27)),
    "k48-odd-blocks": ([conv(name="c", filters=48, kernel=[1, 5], padding=[0, 4])], (3, 3, 30)),
    "wide-kernel-narrow-row": ([conv(name="c", filters=17, kernel=7, padding=3, stride=2)], (3, 9, 5)),
    "1x1-rows-outer": ([conv(name="c", filters=16, kernel=1), {"op": "relu6"}], (16, 96, 96)),
    "1x1-tails-residual": ([conv(name="c", filters=5, kernel=1), {"name": "s", "op": "add", "inputs": ["c", "x"]},
                            {"op": "relu6"}], (5, 17, 19)),
    "1x1-leaky": ([conv(name="c", filters=16, kernel=1), {"op": "leaky_relu", "negative_slope": 0.3}],
                  (4, 16, 18)),
    "1x1-clip-residual": ([conv(name="c", filters=4, kernel=1), {"name": "s", "op": "add", "inputs": ["x", "c"]},
                           {"op": "clip", "min": -0.5, "max": 0.75}], (4, 19, 19)),
    # fewer than POINTWISE_MIN_PIXELS pixels: the 1×1 conv takes the blocked kernel
    "1x1-small-map-blocked": ([conv(name="c", filters=24, kernel=1), {"name": "s", "op": "add", "inputs": ["c", "x"]},
                               {"op": "relu6"}], (24, 7, 7)),
    "1x1-partial-block-parallel": ([conv(name="c", filters=29, kernel=1, bias=False)], (40, 60, 29)),
    # small maps as rows of another length (kernels.direct.pixel_rows): 14×14 as 7 rows of 28, 7×7 as one of 49
    "1x1-14x14-rows-of-28": ([conv(name="c", filters=32, kernel=1), {"name": "s", "op": "add", "inputs": ["c", "x"]},
                              {"op": "relu6"}], (32, 14, 14)),
    "1x1-7x7-one-row": ([conv(name="c", filters=48, kernel=1), {"op": "relu"}, conv(name="d", filters=24, kernel=1)],
                        (40, 7, 7)),
    "residual-relu-parallel": ([conv(name="c", filters=32, kernel=3, padding=1),
                                conv(name="d", filters=32, kernel=3, padding=1, bias=False),
                                {"name": "s", "op": "add", "inputs": ["d", "c"]}, {"op": "relu"}], (8, 40, 40)),
    "depthwise-stride2": ([conv(name="c", filters=24, kernel=3, groups=24, stride=2, padding=1),
                           {"op": "relu6"}], (24, 17, 16)),
    "depthwise-parallel": ([conv(name="c", filters=64, kernel=3, groups=64, padding=1), {"op": "relu"}],
                           (64, 48, 48)),
    "depthwise-residual": ([conv(name="c", filters=8, kernel=5, groups=8, padding=2, bias=False),
                            {"name": "s", "op": "add", "inputs": ["c", "x"]}], (8, 9, 7)),
    "depthwise-dilated-asym": ([conv(name="c", filters=6, kernel=[3, 2], groups=6, dilation=[2, 3],
                                     padding=[2, 0, 1, 3])], (6, 8, 9)),
    # many equal full segments: one C loop over them, then a partial vector
    "rowvec-long-row": ([conv(name="c", filters=8, kernel=5, stride=2, padding=2)], (3, 6, 701)),
    # 8 output rows at a time: two full groups and a remainder of 3; two full column vectors and 5 columns
    "depthwise-row-groups": ([conv(name="c", filters=5, kernel=3, groups=5, padding=1), {"op": "relu6"}],
                             (5, 19, 37)),
    # stride 2: 32 input columns at a time split into even and odd by vector shuffles, the rest one by one
    "depthwise-stride2-split-odd-pad": ([conv(name="c", filters=4, kernel=3, groups=4, stride=2, padding=1)],
                                        (4, 20, 75)),
    "depthwise-stride2-split-even-pad": ([conv(name="c", filters=3, kernel=5, groups=3, stride=2, padding=2),
                                          {"op": "relu"}], (3, 9, 70)),
    "depthwise-stride2-split-unread-tail": ([conv(name="c", filters=2, kernel=3, groups=2, stride=2)], (2, 7, 68)),
    "depthwise-exact-vectors": ([conv(name="c", filters=3, kernel=3, groups=3, padding=1)], (3, 16, 32)),
    # padding wider than the kernel: whole output rows and columns see only zeros
    "depthwise-wide-padding": ([conv(name="c", filters=4, kernel=3, groups=4, stride=3, padding=[4, 5, 3, 4])],
                               (4, 11, 10)),
    # the padded plane would not fit the stack budget: the plain kernel runs instead
    "depthwise-huge-plane": ([conv(name="c", filters=2, kernel=3, groups=2, padding=1)], (2, 150, 180)),
    "maxpool-interior-dilated": ([{"op": "maxpool2d", "kernel": [2, 3], "stride": [2, 1], "dilation": [1, 2]}],
                                 (3, 10, 11)),
    "maxpool-padded": ([{"op": "maxpool2d", "kernel": 3, "stride": 2, "padding": 1}], (3, 9, 8)),
    "maxpool-padded-ceil-dilated": ([{"op": "maxpool2d", "kernel": [3, 2], "stride": [2, 3], "padding": [1, 1, 0, 1],
                                      "dilation": [2, 1], "ceil_mode": True}], (2, 12, 13)),
    "maxpool-padded-parallel": ([{"op": "maxpool2d", "kernel": 3, "stride": 2, "padding": 1}], (128, 64, 64)),
    "dense-large": ([{"op": "flatten"}, {"op": "dense", "units": 600}, {"op": "relu"}], (8, 16, 16)),
    # a channel-blocked input: 4 partial sums per lane over 37·41 pixels (a remainder of 1); threaded
    "global-avgpool-blocked-parallel": ([conv(name="c", filters=48, kernel=1), {"op": "relu"},
                                         {"op": "global_avgpool"}], (48, 37, 41)),
    "global-maxpool-blocked-parallel": ([conv(name="c", filters=48, kernel=1), {"op": "relu"},
                                         {"op": "global_maxpool"}], (48, 37, 41)),
    "global-avgpool-planes-parallel": ([{"op": "global_avgpool"}], (64, 63, 81)),
    # Inception's 3×3/1 pools, padding counted and not; a stride-2 pool whose ceil_mode window runs past the input
    "avgpool-3x3-same-include-pad": ([{"op": "avgpool2d", "kernel": 3, "stride": 1, "padding": 1}], (5, 11, 13)),
    "avgpool-3x3-same-exclude-pad": ([{"op": "avgpool2d", "kernel": 3, "stride": 1, "padding": 1,
                                      "count_include_pad": False}], (5, 11, 13)),
    "avgpool-ceil-asym": ([{"op": "avgpool2d", "kernel": [3, 2], "stride": [2, 3], "padding": [1, 0, 1, 1],
                            "ceil_mode": True, "count_include_pad": False}], (3, 12, 14)),
    "avgpool-ceil-include-pad": ([{"op": "avgpool2d", "kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True}],
                                 (2, 10, 10)),
    "avgpool-2x2-interior": ([{"op": "avgpool2d", "kernel": 2}], (4, 9, 17)),
    # every window reaches the padding: no interior, all frame
    "avgpool-no-interior": ([{"op": "avgpool2d", "kernel": 3, "stride": 1, "padding": 1}], (3, 2, 5)),
    "avgpool-one-interior-row": ([{"op": "avgpool2d", "kernel": [3, 2], "stride": 1, "padding": [1, 1],
                                   "count_include_pad": False}], (2, 3, 9)),
    "avgpool-parallel": ([{"op": "avgpool2d", "kernel": 3, "stride": 1, "padding": 1}], (128, 35, 35)),
    "maxpool-interior-parallel": ([{"op": "maxpool2d", "kernel": 3, "stride": 2}], (64, 111, 111)),
    # a segmentation head's upsample: channels across threads
    "upsample-bilinear-parallel": ([{"op": "upsample", "size": [120, 136], "mode": "bilinear"}], (21, 15, 17)),
    "upsample-nearest-parallel": ([{"op": "upsample", "scale_factor": 8}], (21, 28, 28)),
    "upsample-bilinear-align-corners": ([{"op": "upsample", "scale_factor": [3, 2], "mode": "bilinear",
                                          "coordinate_transformation_mode": "align_corners"}], (3, 5, 7)),
}


# The same convs with more than 8 input channels take the blocked kernel instead of the row-vector one.
for _name in ["k32-wide-rows", "k40-partial-vector", "k20-kb2-partial", "k48-odd-blocks", "wide-kernel-narrow-row",
              "k6-half-vectors"]:
    _layers, _shape = FAST_CASES[_name]
    FAST_CASES[f"{_name}-c12"] = (_layers, (12, *_shape[1:]))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("case", sorted(FAST_CASES))
def test_fast_kernels_match_the_interpreter(case, target, threads):
    layers, shape = FAST_CASES[case]
    graph = load_quietly(model_dict(layers, shape=shape))
    check(graph, 2, batch=2, seed=3, threads=threads, march=target)


# What each kernel's generated C says of its packed weights, per target: 16 lanes and 32 registers (AVX-512),
# 8 lanes and 16 registers (AVX2). The row-vector and pointwise kernels pack MR filters per register block
# (8 with 32 registers, 6 with 16), the blocked and Winograd kernels one vector of filters.
FAST_KERNEL_MARKERS = {
    "avx512": {"rowvec (c, C=3)": "packed [4][3][3][3][8]", "depthwise (d)": "zero-padded plane",
               "blocked (e, C=32)": "weights packed [1][32][3][3][16]", "pointwise (f)": "packed [3][16][8]",
               "winograd (h, C=32), output blocked": "U packed [16][2][32][16]",
               "blocked output of h": "channel-blocked output: each output is one vector of 16 channels",
               "padded max-pool, blocked": "rows with every window row inside: the interior columns' windows",
               "blocked for a 1×1 on 8×8 pixels (i)": "weights packed [1][32][1][1][16]"},
    "avx2": {"rowvec (c, C=3)": "packed [6][3][3][3][6]", "depthwise (d)": "zero-padded plane",
             "blocked (e, C=32)": "weights packed [2][32][3][3][8]", "pointwise (f)": "packed [4][16][6]",
             "winograd (h, C=32), output blocked": "U packed [16][4][32][8]",
             "blocked output of h": "channel-blocked output: each output is one vector of 8 channels",
             "padded max-pool, blocked": "rows with every window row inside: the interior columns' windows",
             "blocked for a 1×1 on 8×8 pixels (i)": "weights packed [2][32][1][1][8]"},
}


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
def test_opt_level_2_chooses_the_fast_kernels(target):
    graph = load_quietly(model_dict([conv(name="c", filters=32, kernel=3, padding=1),
                                     conv(name="d", filters=32, kernel=3, groups=32, padding=1),
                                     conv(name="e", filters=16, kernel=3, padding=2, dilation=2),
                                     conv(name="f", filters=20, kernel=1),  # 20: not channel-blocked
                                     conv(name="g", filters=32, kernel=3, padding=1),
                                     conv(name="h", filters=32, kernel=3, padding=1),
                                     {"op": "maxpool2d", "kernel": 3, "stride": 2, "padding": 1},
                                     conv(name="i", filters=16, kernel=1)], shape=(3, 16, 16)))
    fast = compiler.generate_c(graph, opt_level=2, march=target).code
    plain = compiler.generate_c(graph, opt_level=1, march=target).code
    for what, marker in FAST_KERNEL_MARKERS[TARGET_IDS[TARGETS.index(target)]].items():
        assert marker in fast, what
        assert marker not in plain, what


def test_generated_code_does_not_grow_with_the_row_length():
    """Equal blocks along a row are one C loop: a 20× longer row must not mean 20× the C (it once hung gcc)."""
    def code_bytes(width, **conv_kw):
        graph = load_quietly(model_dict([conv(name="c", filters=8, **conv_kw)], shape=(3, 9, width)))
        return len(compiler.generate_c(graph, opt_level=2, march=AVX512).code)
    for conv_kw in ({"kernel": 3, "padding": 1}, {"kernel": 7, "stride": 2}):
        short, long = code_bytes(500, **conv_kw), code_bytes(10_000, **conv_kw)
        # only the per-column tables of the portable path grow, by a few bytes per column
        assert long - short < 16 * (10_000 - 500), conv_kw


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
def test_a_depthwise_plane_too_big_for_the_stack_keeps_the_plain_kernel(target):
    layers, shape = FAST_CASES["depthwise-huge-plane"]
    code = compiler.generate_c(load_quietly(model_dict(layers, shape=shape)), opt_level=2, march=target).code
    assert "zero-padded plane" not in code


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
@pytest.mark.parametrize("opt_level", OPT_LEVELS)
def test_generated_c_is_pedantic_c99(opt_level, tmp_path):
    """The standalone export builds from the same kernels: at every level they must be plain C99."""
    layers = [conv(name="c", filters=20, kernel=3, padding=1), {"name": "bn", "op": "batchnorm"}, {"op": "relu"},
              conv(name="d", filters=20, kernel=3, groups=20, padding=1), {"name": "s", "op": "add",
                                                                        "inputs": ["d", "bn"]},
              {"op": "leaky_relu"}, conv(name="p", filters=12, kernel=1), conv(name="q", filters=12, kernel=1),
              {"op": "relu6"}, {"op": "maxpool2d", "kernel": 2}, {"op": "flatten"},
              {"op": "dense", "units": 5}, {"op": "relu6"}, {"op": "softmax"}]
    graph = load_quietly(model_dict(layers, shape=(3, 8, 8)))
    (tmp_path / "m.c").write_text(compiler.generate_c(graph, opt_level=opt_level, weights_mode="array").code)
    for flags in ([], ["-fopenmp-simd", "-DCONVC_OMP_SIMD", "-O2"], ["-DCONVC_SERIAL"]):
        proc = subprocess.run(["gcc", "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", *flags, "-c", "m.c"],
                              cwd=tmp_path, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[:2000]


# ---------------------------------------------------------------- threads, concurrency, profiling
def test_threads_option_and_default():
    graph = load_quietly(EXAMPLES / "vgg_cifar.yaml")
    model, _ = check(graph, 2, batch=1, threads=1)
    assert model.threads == 1
    model.set_threads(2)
    assert model.threads == 2
    check(graph, 2, batch=1, threads=2)
    with pytest.raises(ValueError, match="threads"):
        model.set_threads(-1)
    model.set_threads(None)  # back to OpenMP's default


def test_omp_num_threads_is_respected(tmp_path):
    graph = load_quietly(EXAMPLES / "lenet5.yaml")
    path = compiler.compile(graph).save(tmp_path / "m.so")
    code = f"import runtime; print(runtime.load({str(path)!r}).threads)"
    for n in ("1", "3"):
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                             env={"OMP_NUM_THREADS": n, "PATH": "/usr/bin:/bin"})
        assert out.stdout.strip() == n, out.stderr


def test_python_threads_can_share_one_model():
    graph = load_quietly(EXAMPLES / "resnet_small.yaml")
    model = compiler.compile(graph, threads=2)
    xs = [random_input(graph.shape(graph.inputs[0]), 1, seed) for seed in range(6)]
    want = [model(x) for x in xs]
    errors = []

    def worker(i):
        for _ in range(3):
            if not np.array_equal(model(xs[i]), want[i]):
                errors.append(i)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors


def test_profile_build_times_every_layer():
    graph = load_quietly(EXAMPLES / "resnet_small.yaml")
    model, _ = check(graph, 2, batch=1, profile=True)
    seconds = model.profile(reset=True)
    assert list(seconds) == [layer.name for layer in optimize(graph, 2).layers() if layer.op != "input"
                             and not layer.spec.is_view]
    assert all(s > 0 for s in seconds.values())
    assert sum(model.profile().values()) == 0.0  # reset
    with pytest.raises(runtime.LibraryError, match="profil"):
        compiler.compile(graph).profile()


# ---------------------------------------------------------------- the benchmark runs
def test_benchmark_quick_run_writes_its_table(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("torch")
    out = tmp_path / "bench.md"
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--models", "lenet5", "--budget", "0.2",
                           "--output", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    assert "| lenet5 | 1 | 2 |" in text and "FMA peak" in text


def test_benchmark_profile_names_each_layers_kernel():
    proc = subprocess.run([sys.executable, "-m", "bench", "--profile", "lenet5", "--threads", "1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    table, totals = proc.stdout.split("\n\n")[:2]
    rows = {line.split()[0]: line.split() for line in table.splitlines()[2:]}
    # ops by time, largest first: which comes first depends on the run (lenet5's layers take microseconds)
    assert totals.startswith("convc ms by op: ") and " fused_conv2d " in totals and " dense " in totals
    # after fusion: two convs with their relus, two max-pools, three dense layers (flatten is a view)
    assert len(rows) == 7, proc.stdout
    assert rows["relu_2"][1:3] == ["fused_conv2d", "rowvec"]
    assert rows["pool1"][1:3] == ["maxpool2d", "maxpool_interior"]
    assert rows["relu_9"][1:3] == ["fused_dense", "dense_blocked"]  # 120 units: more than a vector's lanes


def test_dropping_a_threaded_model_does_not_crash_the_process(tmp_path):
    """The pool's worker threads idle in the library's code; unloading it under them would crash."""
    graph = load_quietly(EXAMPLES / "vgg_cifar.yaml")
    path = compiler.compile(graph).save(tmp_path / "m.so")
    code = (f"import gc, numpy as np, runtime\n"
            f"m = runtime.load({str(path)!r}, threads=2)\n"
            f"m(np.zeros((1, 3, 32, 32), np.float32))\n"
            f"del m\ngc.collect()\nimport time; time.sleep(0.2)\nprint('alive')\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"GOMP_SPINCOUNT": "infinite", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0 and out.stdout.strip() == "alive", (out.returncode, out.stderr[-1000:])


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("case", ["residual-relu-parallel", "1x1-partial-block-parallel", "depthwise-parallel",
                                  "dense-large", "global-avgpool-blocked-parallel", "global-avgpool-planes-parallel",
                                  "avgpool-parallel", "maxpool-interior-parallel", "upsample-bilinear-parallel",
                                  "upsample-nearest-parallel"])
def test_threaded_cases_do_use_the_pool(case, target):
    """test_fast_kernels_match_the_interpreter[threads=2] covers the pool only if these layers are threaded."""
    layers, shape = FAST_CASES[case]
    code = compiler.generate_c(load_quietly(model_dict(layers, shape=shape)), march=target).code
    assert "convc_parallel(L" in code


# ---------------------------------------------------------------- fold_transposed_layernorm
def _perm_ln_perm(name, to, back, **ln):
    return [{"name": f"{name}_t", "op": "transpose", "perm": to}, {"name": f"{name}_ln", "op": "layernorm", **ln},
            {"name": name, "op": "transpose", "perm": back}]


@pytest.mark.parametrize("layers,outputs,folded", [
    # ConvNeXt's LayerNorm2d twice in a row: two layernorms over the channels, no transposes
    (_perm_ln_perm("a", [0, 2, 3, 1], [0, 3, 1, 2]) + _perm_ln_perm("b", [0, 2, 3, 1], [0, 3, 1, 2], eps=1e-3),
     None, {"a": (1, 1), "b": (1, 1)}),
    # normalizing H and W after moving C last: axes 2..3 of the original
    (_perm_ln_perm("a", [0, 2, 3, 1], [0, 3, 1, 2], axis=1, last_axis=2), None, {"a": (2, 3)}),
    # the normalized axes (W, C) are not in order in the original: kept
    (_perm_ln_perm("a", [0, 2, 3, 1], [0, 3, 1, 2], axis=2), None, {}),
    # the second transpose is not the inverse of the first: kept
    (_perm_ln_perm("a", [0, 2, 3, 1], [0, 2, 3, 1]), None, {}),
    # the layernorm is a model output too: kept
    (_perm_ln_perm("a", [0, 2, 3, 1], [0, 3, 1, 2]), ["a", "a_ln"], {}),
])
def test_transposed_layernorm_folds_where_it_may(layers, outputs, folded):
    extra = {"outputs": outputs} if outputs else {}
    graph = load_quietly(model_dict(layers, shape=(6, 4, 5), **extra))
    opt = optimize(graph, 1)
    norms = {layer.name: (layer.attrs.axis, layer.attrs.last_axis) for layer in opt.layers() if layer.op == "layernorm"}
    for name, axes in folded.items():
        assert norms[name] == axes
    if folded:
        assert not [layer for layer in opt.layers() if layer.op == "transpose"]
    else:
        assert len([layer for layer in opt.layers() if layer.op == "transpose"]) == 2
    for level in OPT_LEVELS:
        check(graph, level)


# ---------------------------------------------------------------- fold_channel_last_chain, fold_channel_scale
def _convnext_block(c):
    """torchvision's CNBlock as the exporters write it (see tests/test_stage_passes.py), at opt levels 0-2."""
    return [
        {"name": "dw", "op": "conv2d", "filters": c, "kernel": 7, "padding": 3, "groups": c},
        {"name": "t1", "op": "transpose", "perm": [0, 2, 3, 1]},
        {"name": "ln", "op": "layernorm", "eps": 1e-6},
        {"name": "w1", "op": "constant", "shape": [c, 4 * c]}, {"name": "m1", "op": "matmul", "inputs": ["ln", "w1"]},
        {"name": "c1", "op": "constant", "shape": [4 * c]}, {"name": "b1", "op": "add", "inputs": ["c1", "m1"]},
        {"name": "g", "op": "gelu"},
        {"name": "w2", "op": "constant", "shape": [4 * c, c]}, {"name": "m2", "op": "matmul", "inputs": ["g", "w2"]},
        {"name": "c2", "op": "constant", "shape": [c]}, {"name": "b2", "op": "add", "inputs": ["m2", "c2"]},
        {"name": "t2", "op": "transpose", "perm": [0, 3, 1, 2]},
        {"name": "gamma", "op": "constant", "shape": [c, 1, 1]}, {"name": "s", "op": "mul", "inputs": ["gamma", "t2"]},
        {"name": "y", "op": "add", "inputs": ["s", "dw"]},
    ]


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("channels,size", [(16, 7), (24, 9), (5, 4)])
def test_convnext_block_compiles_to_1x1_convs_and_matches(channels, size, target):
    graph = load_quietly(model_dict(_convnext_block(channels), shape=(channels, size, size)))
    opt = optimize(graph, 2)
    assert {layer.op for layer in opt.layers()} == {"input", "conv2d", "layernorm", "fused_conv2d"}
    for level in OPT_LEVELS:
        check(graph, level, march=target)
