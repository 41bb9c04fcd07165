"""The whole-map Winograd kernel (compiler/kernels/winograd_planes.py): dilated 3×3 convs and ones whose
transformed weights outgrow the cache, against the float64 interpreter on both targets.

Most cases force the kernel on every layer it can take, so small odd shapes and every dilation phase
pattern reach it; the last tests check which layers the cost model gives it.
"""
import dataclasses
import re
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import compiler
from compiler.kernels import winograd, winograd_planes
from conftest import AVX2, AVX512, TARGET_IDS, TARGETS, compile_and_check, kernel_plan, model_dict

PLANES = "ops/conv2d_winograd_planes.c.j2"
ALWAYS = {"*": "winograd_planes"}


def load_quietly(description):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", compiler.ConvcWarning)
        return compiler.load(description)


def chosen(graph, target=AVX512, kernels=None):
    """Layer name -> (its kernel, why)."""
    return {name: (c.kernel, c.reason) for name, c in kernel_plan(graph, target, 2, kernels)[1].choices.items()}


def conv(c_out, padding=1, dilation=1, bias=True, name="c"):
    return {"name": name, "op": "conv2d", "filters": c_out, "kernel": 3, "padding": padding, "dilation": dilation,
            "bias": bias}


SHAPES = {  # (C, K, H, W, padding, dilation)
    "5x7-pad1": (17, 20, 5, 7, 1, 1),
    "8x8-pad1": (16, 32, 8, 8, 1, 1),
    "13x11-pad0": (17, 20, 13, 11, 0, 1),
    "13x11-pad2": (9, 33, 13, 11, 2, 1),
    "asymmetric-pad": (20, 20, 12, 10, [0, 1, 2, 0], 1),
    "dilation2": (20, 20, 12, 10, 2, 2),
    "dilation2-odd-phases": (33, 48, 15, 13, 2, 2),
    "dilation2-pad1": (18, 24, 11, 14, 1, 2),
    "dilation3": (19, 16, 15, 9, 3, 3),
    "dilation4-28x28": (24, 40, 28, 28, 4, 4),
    "dilation-2x3": (12, 17, 13, 16, [2, 3, 2, 3], [2, 3]),
    "dilation4-asymmetric-pad": (11, 7, 17, 19, [4, 0, 3, 5], 4),
    "two-tiles-per-phase": (10, 16, 4, 8, [2, 2, 2, 2], 2),
}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("case", sorted(SHAPES))
def test_planes_match_the_interpreter(case, target, threads):
    c, k, h, w, padding, dilation = SHAPES[case]
    graph = load_quietly(model_dict([conv(k, padding, dilation)], shape=(c, h, w)))
    assert chosen(graph, target, ALWAYS)["c"][0] == "winograd_planes"
    compile_and_check(graph, batch=3, seed=1, opt_level=2, threads=threads, march=target, kernels=ALWAYS)


EPILOGUES = {
    "relu": [{"op": "relu"}],
    "leaky": [{"op": "leaky_relu", "negative_slope": 0.2}],
    "residual-relu": [{"name": "s", "op": "add", "inputs": ["c", "x"]}, {"op": "relu"}],
    "residual-only": [{"name": "s", "op": "add", "inputs": ["x", "c"]}],
    "batchnorm-clip": [{"name": "bn", "op": "batchnorm"}, {"op": "clip", "min": -0.3, "max": 0.4}],
}


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("case", sorted(EPILOGUES))
def test_planes_fused_epilogues(case, target):
    """Bias, batchnorm, residual and activations in the output pass; 20 filters: a partly filled last vector."""
    graph = load_quietly(model_dict([conv(20, padding=2, dilation=2, bias=False), *EPILOGUES[case]],
                                    shape=(20, 11, 13), seed=4))
    kernels = chosen(graph, target, ALWAYS)
    assert [k for k, _ in kernels.values()] == ["winograd_planes"]  # the epilogue fused in
    compile_and_check(graph, batch=2, seed=2, opt_level=2, threads=2, march=target, kernels=ALWAYS)


@settings(max_examples=10, deadline=None, derandomize=True, database=None)
@given(st.integers(9, 40), st.integers(1, 40), st.integers(4, 20), st.integers(4, 20),
       st.lists(st.integers(0, 4), min_size=4, max_size=4), st.integers(1, 4), st.integers(1, 4),
       st.sampled_from(TARGETS))
def test_planes_random_shapes(c, k, h, w, padding, dh, dw, target):
    top, left, bottom, right = padding
    if h + top + bottom - 2 * dh < 1 or w + left + right - 2 * dw < 1:
        return
    graph = load_quietly(model_dict([conv(k, padding, [dh, dw]), {"op": "relu"}], shape=(c, h, w)))
    layer = graph.layer("c")
    args = layer.spec.kernel_args(layer, [(c, h, w)], graph.out_shape("c"))
    if winograd_planes.why_not_eligible(layer.attrs, c, args) is not None:
        return
    assert [k for k, _ in chosen(graph, target, ALWAYS).values()] == ["winograd_planes"]
    compile_and_check(graph, batch=2, seed=c + k, opt_level=2, threads=2, march=target, kernels=ALWAYS)


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
def test_channel_groups_and_chunks(target, monkeypatch):
    """A small L2 and V budget: 40 input channels in chunks of 14 (14, 14, 12), transformed and multiplied one
    chunk per group, the partial sums carried in M across groups."""
    monkeypatch.setattr(winograd_planes, "V_BUDGET_BYTES", 1)
    small = dataclasses.replace(target, l2_bytes=4096)
    graph = load_quietly(model_dict([conv(24, padding=2, dilation=2), {"op": "relu"}], shape=(40, 13, 11)))
    (choice,) = kernel_plan(graph, small, 2, ALWAYS)[1].choices.values()
    p = choice.params
    assert (p.CC, p.CC_LAST, p.GC, p.GC_LAST) == (14, 12, 14, 12)
    for threads in (1, 2):
        compile_and_check(graph, batch=2, seed=5, opt_level=2, threads=threads, march=small, kernels=ALWAYS)


def test_tiles_of_every_phase_are_numbered_once():
    """Each output is in exactly one tile (first output, +DW, +DH·OW, +DH·OW+DW, those inside the map)."""
    for oh, ow, dh, dw in [(28, 28, 4, 4), (15, 13, 2, 2), (13, 16, 2, 3), (4, 8, 2, 2), (9, 6, 1, 1)]:
        seen = np.zeros((oh, ow), int)
        for py, px, rows, cols in winograd_planes.phase_tiles(oh, ow, dh, dw):
            for j in range(rows):
                for t in range(cols):
                    y0, x0 = py + 2 * dh * j, px + 2 * dw * t
                    for y in (y0, y0 + dh):
                        for x in (x0, x0 + dw):
                            if y < oh and x < ow:
                                seen[y, x] += 1
        assert (seen == 1).all(), (oh, ow, dh, dw)


def test_eligibility_names_why():
    layers = [conv(16, name="ok", padding=2, dilation=2),
              {"name": "s2", "op": "conv2d", "filters": 16, "kernel": 3, "stride": 2},
              {"name": "grp", "op": "conv2d", "filters": 16, "kernel": 3, "groups": 2, "padding": 1},
              {"name": "d5", "op": "conv2d", "filters": 16, "kernel": 3, "dilation": 5, "padding": 5},
              {"name": "few", "op": "conv2d", "filters": 8, "kernel": 3, "padding": 1},
              {"name": "after_few", "op": "conv2d", "filters": 16, "kernel": 3, "padding": 1}]
    graph = load_quietly(model_dict(layers, shape=(16, 7, 20)))
    kernels = chosen(graph, AVX512, ALWAYS)
    assert kernels["ok"][0] == kernels["few"][0] == "winograd_planes"
    assert all(kernels[n][0] != "winograd_planes" for n in ("s2", "grp", "d5", "after_few"))
    for layer, why in (("d5", "its dilation is at most 4 (this layer's is 5×5)"), ("s2", "stride-1"),
                       ("after_few", "at least 9 input channels (this layer has 8)")):
        with pytest.raises(compiler.ModelError, match=re.escape(why)):
            chosen(graph, AVX512, {layer: "winograd_planes"})
    short = load_quietly(model_dict([conv(16, padding=4, dilation=4)], shape=(16, 7, 9)))
    with pytest.raises(compiler.ModelError, match=re.escape("per dilation phase (output 7×9, dilation 4×4)")):
        chosen(short, AVX512, {"c": "winograd_planes"})


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
def test_cost_model_takes_the_fcn_head_and_dilated_resnet_layers(target):
    """FCN/DeepLab-ResNet-50 shapes (weights only, nothing runs): the 2048 -> 512 head (67 MB of transformed
    weights, past the item-wise kernel's limit) and layer3/layer4's dilated 3×3 convs take this kernel; DeepLab's
    ASPP at dilation 12 (more phases than the limit) and tiny maps keep the direct kernel."""
    head = load_quietly(model_dict([conv(512, bias=False)], shape=(2048, 28, 28)))
    assert winograd.weight_bytes(2048, 512, target.lanes) > winograd.MAX_WEIGHT_BYTES
    kernel, reason = chosen(head, target)["c"]
    assert kernel == "winograd_planes" and reason.startswith("cost model")
    for c, d in ((256, 2), (512, 4)):
        dilated = load_quietly(model_dict([conv(c, padding=d, dilation=d, bias=False)], shape=(c, 28, 28)))
        assert chosen(dilated, target)["c"][0] == "winograd_planes"
    aspp = load_quietly(model_dict([conv(256, padding=12, dilation=12, bias=False)], shape=(2048, 28, 28)))
    assert chosen(aspp, target)["c"][0] == "direct"
    small = load_quietly(model_dict([conv(64, padding=1, bias=False)], shape=(64, 56, 56)))
    assert chosen(small, target)["c"][0] == "winograd"  # weights in cache: the item-wise kernel


def test_scratch_holds_v_and_m():
    graph = load_quietly(model_dict([conv(40, padding=2, dilation=2)], shape=(24, 13, 15)))
    choice = kernel_plan(graph, AVX2, 2, ALWAYS)[1]["c"]
    p = choice.params
    tiles = sum(r * w for _, _, r, w in winograd_planes.phase_tiles(13, 15, 2, 2))
    assert p.T == tiles and p.TS == tiles + 8 and p.V_FLOATS >= 16 * 24 * p.TS and p.V_FLOATS % 16 == 0
    assert choice.scratch_floats == p.V_FLOATS + 16 * 5 * tiles * 8  # M: 16 planes × 5 vectors of 8 filters
