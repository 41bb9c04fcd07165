"""Channel-blocked tensors (compiler/kernels/layouts.py): which tensors get the [C/L][H][W][L] layout, and that the
kernels reading and writing it compute what the interpreter computes on the unoptimized graph.

L is the target's vector length (16 for AVX-512, 8 for AVX2); every test states its target, and the channel
counts here are multiples of 16 (blocked on either) or are not multiples of 8 (blocked on neither).
"""
from __future__ import annotations

import shutil
import subprocess
import warnings

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import compiler
from conftest import AVX2, AVX512, TARGET_IDS, TARGETS, compile_and_check, kernel_plan, model_dict, out_size


def conv(name, filters, kernel=1, **kw):
    return {"name": name, "op": "conv2d", "filters": filters, "kernel": kernel, **kw}


def load(layers, shape):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", compiler.ConvcWarning)
        return compiler.load(model_dict(layers, shape=shape))


def inverted_residual(size=7, stride=1, act="relu6", dw_kw=None, expand=32):
    """MobileNetV2's block (with its residual when the stride is 1) between two convs, so that every inner
    tensor has a reader that can take it channel-blocked: z is a 3×3 stride-2 conv (the blocked kernel)."""
    layers = [conv("a", 16), {"name": "a_act", "op": "relu"},
              conv("e", expand), {"name": "e_act", "op": act},
              conv("d", expand, **{"kernel": 3, "groups": expand, "stride": stride, "padding": 1, **(dw_kw or {})}),
              {"name": "d_act", "op": act}, conv("p", 16)]
    if stride == 1:
        layers.append({"name": "s", "op": "add", "inputs": ["p", "a_act"]})
    layers.append(conv("z", 16, 3, stride=2, padding=1))
    return layers, (12, size, size)


def blocked_of(graph, opt_level=2, target=AVX512):
    return set(kernel_plan(graph, target, opt_level)[1].layouts)


each_target = pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)


# ---------------------------------------------------------------- which tensors
@each_target
def test_an_inverted_residual_block_runs_channel_blocked_inside(target):
    graph = load(*inverted_residual())
    # a (read by e and, fused, as p's residual), e, d and p: producers and readers all channel-vector kernels
    assert blocked_of(graph, target=target) == {"a_act", "e_act", "d_act", "s"}


def test_only_opt_level_2_blocks():
    graph = load(*inverted_residual())
    assert blocked_of(graph, 0) == blocked_of(graph, 1) == set()


@each_target
def test_model_inputs_and_outputs_stay_c_h_w(target):
    layers, shape = inverted_residual()
    graph = load(layers[:-1], shape)  # s (the fused p) is now the model's output
    blocked = blocked_of(graph, target=target)
    assert "s" not in blocked
    # the residual is tied to the output it is added to, so a_act goes back to C×H×W with it
    assert blocked == {"e_act", "d_act"}


@each_target
def test_a_view_reader_keeps_its_input_c_h_w(target):
    layers, shape = inverted_residual()
    graph = load(layers + [{"name": "f", "op": "flatten", "inputs": ["d_act"]}, {"name": "fc", "op": "dense",
                                                                               "units": 3}], shape)
    # d is read by a flatten; the depthwise conv still reads e blocked and writes C×H×W
    blocked = blocked_of(graph, target=target)
    assert "d_act" not in blocked and "e_act" in blocked


@each_target
def test_a_depthwise_conv_writes_c_h_w_from_a_blocked_input_only(target):
    # d's reader (a max-pool) takes C×H×W: d reads e blocked and transposes its output, residual r C×H×W too
    graph = load(*CASES["depthwise-to-c-h-w"])
    assert blocked_of(graph, target=target) == {"e_act"}
    lanes = target.lanes
    assert f"transpose the {lanes}×{lanes} tile" in compiler.generate_c(graph, opt_level=2, march=target).code
    # from a C×H×W input (the model's) no blocked output, though its reader could take one
    graph = load([conv("d", 16, 3, groups=16, padding=1), conv("p", 16), conv("z", 16, 3, stride=2)],
                 (16, 7, 7))
    assert blocked_of(graph, target=target) == {"p"}


@each_target
def test_channels_that_are_not_whole_vectors_stay_c_h_w(target):
    layers, shape = inverted_residual(expand=target.lanes + 4)
    assert {"d_act", "e_act"}.isdisjoint(blocked_of(load(layers, shape), target=target))


@each_target
def test_a_large_map_blocks_a_1x1_input_only_with_its_output(target):
    """1×1 convs on ≥ 256 pixels read a blocked input only when they write a blocked output (the channel-vector
    kernel would scatter a C×H×W one)."""
    def chain(p_filters, z):
        return load([conv("e", 32), {"name": "e_act", "op": "relu"}, conv("d", 32, 3, groups=32, padding=1),
                     conv("p", p_filters), z], (12, 20, 20))
    z_any = conv("z", 16, 3, stride=2, padding=1)  # the blocked kernel: reads either layout
    assert blocked_of(chain(16, z_any), target=target) == {"e_act", "d", "p"}
    # p cannot write 20 channels blocked, so it does not read d blocked; d turns e's blocked tensor into C×H×W
    assert blocked_of(chain(20, z_any), target=target) == {"e_act"}
    # z, a 1×1, writes the model's output, so it reads p C×H×W; then p writes C×H×W and reads d so too
    assert blocked_of(chain(16, conv("z", 16)), target=target) == {"e_act"}


@each_target
def test_the_generated_c_says_which_tensors_are_blocked(target):
    code = compiler.generate_c(load(*inverted_residual()), opt_level=2, march=target).code
    lanes = target.lanes
    assert f"layout: x0 [C/{lanes}][H][W][{lanes}], y [C/{lanes}][H][W][{lanes}]" in code  # the depthwise conv
    assert "conv2d_depthwise_blocked" not in code  # templates are named only by what they generate
    # d's weights, per vector of channels: [32/L][3][3][L]
    assert f"weights packed [{32 // lanes}][3][3][{lanes}]" in code


# ---------------------------------------------------------------- the kernels against the interpreter
# Depthwise variants on blocked tensors: strides, dilation, asymmetric and wide padding, no bias, leaky
# activation, maps narrower and wider than a register block of pixels, large maps through the 1×1 kernels.
CASES = {
    "7x7": inverted_residual(7),
    "14x14-relu": inverted_residual(14, act="relu"),
    "stride2": inverted_residual(14, stride=2),
    "stride2-odd": inverted_residual(9, stride=2),
    "dilated-no-bias": inverted_residual(11, dw_kw={"dilation": 2, "padding": 2, "bias": False}),
    "5x5-asym-padding": inverted_residual(10, dw_kw={"kernel": [5, 3], "padding": [3, 0, 1, 2]}),
    "wide-padding-stride3": inverted_residual(8, stride=3, dw_kw={"padding": [4, 5, 3, 4]}),
    "leaky": inverted_residual(6, act="leaky_relu"),
    "one-pixel": inverted_residual(1),
    "large-map": inverted_residual(20),
    "large-map-stride2": inverted_residual(33, stride=2, expand=48),
    "depthwise-residual": ([conv("a", 16), conv("e", 32), {"name": "e_act", "op": "relu"},
                            conv("d", 32, 3, groups=32, padding=1), {"name": "s", "op": "add", "inputs": ["d", "e_act"]},
                            {"op": "relu6"}, conv("p", 16), conv("z", 16, 3, stride=2, padding=1)], (12, 9, 9)),
    # a blocked input, a C×H×W output (its reader is a local response norm) and residual: the output tile is
    # transposed
    "depthwise-to-c-h-w": ([conv("e", 32, inputs=["x"]), {"name": "e_act", "op": "relu"},
                            conv("r", 32, 3, padding=1, inputs=["x"]),
                            conv("d", 32, 3, groups=32, padding=1, inputs=["e_act"]),
                            {"name": "s", "op": "add", "inputs": ["d", "r"]}, {"op": "relu6"},
                            {"op": "lrn", "size": 3}], (12, 6, 19)),
    # pools between blocked tensors (pool_blocked): padded and strided windows, ceil mode, counts with and
    # without the padding, a dilated window, maps smaller than a window
    "pools": ([conv("e", 32, 3, padding=1), {"name": "m", "op": "maxpool2d", "kernel": 3, "stride": 2, "padding": 1},
               {"name": "a", "op": "avgpool2d", "kernel": 3, "stride": 1, "padding": 1},
               {"name": "c", "op": "avgpool2d", "kernel": 2, "stride": 2, "ceil_mode": True,
                "count_include_pad": False},
               {"name": "dm", "op": "maxpool2d", "kernel": 2, "stride": 1, "dilation": 2, "padding": 1},
               conv("z", 16, 3, stride=2, padding=1)], (12, 13, 11)),
    "pools-tiny-map": ([conv("e", 32, 3, padding=1), {"name": "m", "op": "maxpool2d", "kernel": 3, "padding": 1},
                        {"name": "a", "op": "avgpool2d", "kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True},
                        conv("z", 16, 3, stride=2, padding=1)], (12, 2, 3)),
    # Inception's block: branches concatenated channel-blocked, one in place, one read by a pool as well
    "concat": ([conv("s", 32), conv("b1", 16, inputs=["s"]), conv("b3", 32, [1, 3], padding=[0, 1], inputs=["s"]),
                {"name": "p", "op": "maxpool2d", "kernel": 3, "stride": 1, "padding": 1, "inputs": ["s"]},
                conv("bp", 16, inputs=["p"]), {"name": "cat", "op": "concat", "inputs": ["b1", "b3", "bp"]},
                {"name": "after", "op": "avgpool2d", "kernel": 3, "stride": 1, "padding": 1},
                conv("z", 16, 3, stride=2, padding=1, inputs=["after"])], (32, 7, 9)),
    # DenseNet's BN-ReLU on a concat (batchnorm_blocked), one with a residual, both in place in the next concat
    "bn-relu-concat": ([conv("s", 32, 3, padding=1), conv("c1", 16, 1, inputs=["s"]),
                        {"name": "cat", "op": "concat", "inputs": ["s", "c1"]},
                        {"name": "bn", "op": "batchnorm"}, {"name": "bn_act", "op": "relu"},
                        {"name": "bn2", "op": "batchnorm", "inputs": ["cat"]},
                        {"name": "sum", "op": "add", "inputs": ["bn2", "cat"]}, {"name": "sum_act", "op": "relu6"},
                        {"name": "cat2", "op": "concat", "inputs": ["bn_act", "sum_act"]},
                        conv("z", 16, 3, stride=2, padding=1)], (12, 7, 9)),
    # squeeze-excitation's scale (a per-channel operand first or second) and a full-size operand, between blocked
    # convs: elementwise_blocked
    "se-scale": ([conv("e", 32), {"name": "e_act", "op": "relu"}, conv("d", 32, 3, groups=32, padding=1),
                  {"name": "d_act", "op": "relu"}, {"name": "g", "op": "global_avgpool"}, conv("f1", 8),
                  {"op": "relu"}, conv("f2", 32), {"name": "sig", "op": "sigmoid"},
                  conv("f3", 32, inputs=["g"]), {"name": "sig3", "op": "sigmoid"},
                  {"name": "m", "op": "mul", "inputs": ["sig", "d_act"]},
                  {"name": "q", "op": "div", "inputs": ["m", "sig3"]},
                  {"name": "r", "op": "sub", "inputs": ["q", "e_act"]},
                  conv("p", 16), conv("z", 16, 3, stride=2, padding=1)], (12, 6, 7)),
    # global pools read blocked tensors (their C×1×1 output is the same in both layouts)
    "global-avgpool": ([conv("e", 32), conv("d", 32, 3, groups=32, padding=1), {"op": "global_avgpool"}],
                       (12, 5, 6)),
    "global-maxpool": ([conv("e", 32), conv("d", 32, 3, groups=32, padding=1), {"op": "global_maxpool"},
                        {"op": "flatten"}], (12, 4, 3)),
    "wide-row-1x3": ([conv("e", 32), conv("d", 32, [1, 3], groups=32, padding=[0, 1]), conv("p", 16)],
                     (12, 3, 61)),
}


@each_target
def test_pools_and_concats_keep_the_blocked_layout(target):
    """Pools and channel concats of whole vectors read and write the layout of their neighbours: the pools hand
    themselves to pool_blocked, and a blocked concat's parts are still computed in place."""
    from compiler.memory import plan_memory

    graph, plan = kernel_plan(load(*CASES["concat"]), target)
    lanes = target.lanes
    assert {"s", "b1", "b3", "p", "bp", "cat", "after"} <= set(plan.layouts)
    assert plan["p"].kernel == plan["after"].kernel == "pool_blocked"
    assert plan["p"].layouts == plan["after"].layouts == (lanes, lanes)
    assert plan["cat"].kernel == "concat" and plan["cat"].layouts == (lanes,) * 4
    slices = plan_memory(graph, plan).slices
    assert {name: (s.parent, s.offset) for name, s in slices.items()} == {
        "b1": ("cat", 0), "b3": ("cat", 16 * 7 * 9), "bp": ("cat", 48 * 7 * 9)}
    # a pool of channels that are not whole vectors stays C×H×W
    graph, plan = kernel_plan(load([conv("e", 20, 3, padding=1), {"name": "m", "op": "maxpool2d", "kernel": 2},
                                    conv("z", 16, 3, stride=2, padding=1)], (12, 8, 8)), target)
    assert plan["m"].kernel == "maxpool_interior" and not plan.layouts


@each_target
def test_a_blocked_max_pool_skips_nan_taps_as_the_plain_loops_do(target):
    """A NaN in a window (first tap or not) changes nothing in a max pool's plain loops, which start from −∞;
    pool_blocked's interior and frame windows do the same. One NaN input pixel makes every channel NaN there."""
    import numpy as np

    from conftest import runnable

    graph = load([conv("e", 16, 1), {"name": "m", "op": "maxpool2d", "kernel": 3, "stride": 1, "padding": 1},
                  conv("z", 16, 3, stride=2, padding=1)], (12, 6, 7))
    assert kernel_plan(graph, target)[1]["m"].kernel == "pool_blocked"
    x = np.random.default_rng(3).standard_normal((2, 12, 6, 7)).astype(np.float32)
    x[0, :, 0, 0] = np.nan  # a frame window's first tap
    x[1, :, 2, 3] = np.nan  # interior windows, first tap of one of them
    outputs = [compiler.compile(graph, opt_level=level, march=runnable(target), threads=1).run({"x": x})
               for level in (0, 2)]
    plain, blocked = (out[graph.outputs[0]] for out in outputs)
    assert np.isfinite(plain).all()
    np.testing.assert_allclose(blocked, plain, rtol=1e-5, atol=1e-5)


def winograd_block(kernel, a_channels):
    """A Winograd conv w (forced: `kernel`) with a fused residual and relu, writing its output blocked for a pool
    and a direct conv; its input a, also read by r, is blocked where a_channels is a multiple of the lanes (20:
    C×H×W on both targets). The 9×11 map leaves the last tile row and column half outside (dilated by 2 for
    winograd_planes)."""
    dilated = {"dilation": 2, "padding": 2} if kernel == "winograd_planes" else {"padding": 1}
    return ([conv("a", a_channels, 3, padding=1), conv("w", 32, 3, inputs=["a"], **dilated),
             conv("r", 32, inputs=["a"]), {"name": "s", "op": "add", "inputs": ["r", "w"]}, {"name": "act", "op": "relu"},
             {"name": "m", "op": "maxpool2d", "kernel": 3, "stride": 1, "padding": 1},
             conv("z", 16, 3, stride=2, padding=1)], (12, 9, 11))


@each_target
def test_a_batchnorm_on_a_blocked_concat_stays_blocked(target):
    """A BN-ReLU that no conv absorbs reads and writes the layout of the concat it reads (batchnorm_blocked,
    the residual in the same layout); on C×H×W tensors the op's plain loops keep it."""
    _, plan = kernel_plan(load(*CASES["bn-relu-concat"]), target)
    lanes = target.lanes
    assert plan["bn_act"].kernel == plan["sum_act"].kernel == "batchnorm_blocked"
    assert plan["bn_act"].layouts == (lanes, lanes) and plan["sum_act"].layouts == (lanes,) * 3
    assert {"cat", "bn_act", "sum_act", "cat2"} <= set(plan.layouts)
    _, plan = kernel_plan(load([conv("s", 20, 3, padding=1), conv("c1", 12, 1, inputs=["s"]),
                                {"name": "cat", "op": "concat", "inputs": ["s", "c1"]}, {"name": "bn", "op": "batchnorm"},
                                {"name": "bn_act", "op": "relu"}, conv("z", 16, 3, stride=2, padding=1)], (12, 7, 9)),
                          target)
    assert plan["bn_act"].kernel == "plain" and not plan.layouts  # 32 channels, but s and c1 are not whole vectors


@each_target
def test_elementwise_ops_with_per_channel_operands_stay_blocked(target):
    """Squeeze-excitation's multiply (and div, sub) between blocked convs: elementwise_blocked, the per-channel
    operand read as it is (C×1×1 is the same memory in both layouts), the others in the output's layout."""
    _, plan = kernel_plan(load(*CASES["se-scale"]), target)
    lanes = target.lanes
    assert {plan[n].kernel for n in ("m", "q", "r")} == {"elementwise_blocked"}
    assert {"e_act", "d_act", "m", "q", "r"} <= set(plan.layouts)
    assert plan["m"].layouts[1:] == (lanes, lanes) and plan["q"].layouts[0] == plan["q"].layouts[2] == lanes
    assert plan["r"].layouts == (lanes,) * 3
    # a per-channel operand also read blocked elsewhere, by a multiply whose output is the model's (C×H×W): that
    # multiply takes the op's loops, which read C×H×W only, so the operand stays C×H×W
    graph = load([conv("e", 32), {"name": "g", "op": "global_avgpool"}, conv("s", 32),
                  {"name": "m1", "op": "mul", "inputs": ["e", "s"]}, conv("z", 16, 3, stride=2, padding=1),
                  conv("e2", 32, inputs=["x"]), {"name": "m2", "op": "mul", "inputs": ["e2", "s"]}], (12, 6, 7))
    _, plan = kernel_plan(graph, target)
    assert plan["m2"].kernel == "plain" and plan["m2"].layouts == (0, 0, 0) and "s" not in plan.layouts
    assert plan["m1"].kernel == "elementwise_blocked" and plan["m1"].layouts == (lanes, 0, lanes)
    compile_and_check(graph, batch=2, seed=2, opt_level=2, threads=1, march=target)
    # an operand broadcast along the channels (1×H×W) keeps the op's loops, and its neighbours C×H×W
    _, plan = kernel_plan(load([conv("e", 32), conv("h", 1, inputs=["x"]),
                                {"name": "m", "op": "mul", "inputs": ["e", "h"]}, conv("z", 16, 3, stride=2, padding=1)],
                               (12, 6, 7)), target)
    assert plan["m"].kernel == "plain" and "e" not in plan.layouts


@pytest.mark.parametrize("x_blocked", [False, True], ids=["c_h_w-input", "blocked-input"])
@pytest.mark.parametrize("kernel", ["winograd", "winograd_planes"])
@pytest.mark.parametrize("threads", [1, 2])
@each_target
def test_winograd_reads_either_layout_and_writes_a_blocked_output(kernel, threads, target, x_blocked):
    """A blocked input is read XL floats per pixel; 3 vectors of input channels make the AVX2 build's last chunk of
    split rows a part one (CB 16 of 24 channels), its chunks crossing channel blocks."""
    lanes = target.lanes
    graph = load(*winograd_block(kernel, 3 * lanes if x_blocked else 20))
    _, plan = kernel_plan(graph, target, kernels={"w": kernel})
    # w with the add and relu fused in (named after the relu): input, residual, output
    assert plan["act"].kernel == kernel and plan["act"].layouts == (lanes if x_blocked else 0, lanes, lanes)
    assert ("a" in plan.layouts) == x_blocked and {"r", "act", "m"} <= set(plan.layouts)
    compile_and_check(graph, batch=2, seed=8, opt_level=2, threads=threads, march=target, kernels={"w": kernel})
    compile_and_check(graph, batch=1, seed=9, opt_level=2, threads=1, march=target, kernels={"w": kernel},
                      cflags=["-DCONVC_NO_VECTOR_EXTENSIONS"])
    if shutil.which("gcc"):
        code = compiler.generate_c(graph, opt_level=2, march=target, kernels={"w": kernel}, weights_mode="array").code
        for flags in ([], ["-DCONVC_NO_VECTOR_EXTENSIONS"]):
            proc = subprocess.run(["gcc", "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-O2", *flags, "-c",
                                   "-x", "c", "-", "-o", "/dev/null"], input=code, capture_output=True, text=True)
            assert proc.returncode == 0, proc.stderr[:2000]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", sorted(CASES))
def test_blocked_layouts_match_the_interpreter(case, threads):
    graph = load(*CASES[case])
    assert blocked_of(graph), "the case must reach the channel-blocked kernels"
    compile_and_check(graph, batch=3, seed=4, opt_level=2, threads=threads, march=AVX512)


@pytest.mark.parametrize("case", ["7x7", "stride2", "dilated-no-bias", "leaky", "large-map", "depthwise-residual",
                                  "global-maxpool", "depthwise-to-c-h-w", "pools", "concat", "bn-relu-concat",
                                  "se-scale"])
def test_the_portable_path_matches_the_interpreter(case):
    """The scalar path (compilers without GNU vector extensions) reads and writes the same layouts."""
    graph = load(*CASES[case])
    compile_and_check(graph, batch=2, seed=5, opt_level=2, threads=1, cflags=["-DCONVC_NO_VECTOR_EXTENSIONS"],
                      march=AVX512)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("case", ["depthwise-residual", "stride2", "global-maxpool", "large-map",
                                  "depthwise-to-c-h-w", "pools", "bn-relu-concat", "se-scale"])
def test_blocked_kernels_are_pedantic_c99(case, target, tmp_path):
    code = compiler.generate_c(load(*CASES[case]), opt_level=2, march=target, weights_mode="array").code
    (tmp_path / "m.c").write_text(code)
    for flags in ([], ["-DCONVC_NO_VECTOR_EXTENSIONS"]):
        proc = subprocess.run(["gcc", "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-O2", *flags, "-c",
                               "m.c"], cwd=tmp_path, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[:2000]


# ---------------------------------------------------------------- random chains
@st.composite
def channel_vector_chains(draw):
    """A 1×1 conv, then random 1×1 convs (whole vectors of channels), depthwise convs (kernel, stride,
    dilation and asymmetric padding at random), activations, residual adds and max-pools (channel-blocked
    too: pool_blocked), then a conv the blocked kernel takes (3×3, stride 2) or the model's output (C×H×W).
    Shapes are tracked with PyTorch's output-size rule."""
    h, w = draw(st.integers(1, 18)), draw(st.integers(1, 18))
    shape = (draw(st.sampled_from([16, 32])), h, w)
    layers = [conv("l0", shape[0])]
    shapes = {"l0": shape}
    for i in range(1, draw(st.integers(2, 6))):
        kind = "depthwise" if i == 1 else draw(st.sampled_from(["pointwise", "depthwise", "depthwise", "act", "add",
                                                                 "pool"]))
        name, prev = f"l{i}", layers[-1]["name"]
        if kind == "pointwise":
            layers.append(conv(name, draw(st.sampled_from([16, 32, 48]))))
            shapes[name] = (layers[-1]["filters"], *shapes[prev][1:])
        elif kind == "depthwise":
            c, ih, iw = shapes[prev]
            (kh, kw), (sh, sw), (dh, dw) = [(draw(st.integers(1, hi)), draw(st.integers(1, hi))) for hi in (5, 3, 2)]
            pads = [draw(st.integers(0, d * (k - 1))) for d, k in ((dh, kh), (dw, kw), (dh, kh), (dw, kw))]
            oh, ow = out_size(ih, kh, sh, dh, pads[0], pads[2]), out_size(iw, kw, sw, dw, pads[1], pads[3])
            if oh < 1 or ow < 1 or (ih - 1 + pads[0] + pads[2] - dh * (kh - 1)) % sh \
                    or (iw - 1 + pads[1] + pads[3] - dw * (kw - 1)) % sw:
                continue  # no output, or input rows never read (a warning): skip the layer
            layers.append(conv(name, c, [kh, kw], groups=c, stride=[sh, sw], dilation=[dh, dw], padding=pads,
                               bias=draw(st.booleans())))
            shapes[name] = (c, oh, ow)
        elif kind == "pool":
            c, ih, iw = shapes[prev]
            layers.append({"name": name, "op": "maxpool2d", "kernel": [min(2, ih), min(2, iw)], "stride": 1})
            shapes[name] = (c, ih - min(2, ih) + 1, iw - min(2, iw) + 1)
        elif kind == "act":
            layers.append({"name": name, "op": draw(st.sampled_from(["relu", "relu6", "leaky_relu"]))})
            shapes[name] = shapes[prev]
        else:
            same = [n for n in shapes if n != prev and shapes[n] == shapes[prev]]
            if not same:
                continue
            layers.append({"name": name, "op": "add", "inputs": [prev, draw(st.sampled_from(same))]})
            shapes[name] = shapes[prev]
    if draw(st.booleans()):
        layers.append(conv("tail", 16, 3, stride=2, padding=1))
    else:  # the last tensor is the model's output: C×H×W
        layers.append({"name": "tail", "op": "relu"})
    return layers, (12, h, w)


@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(channel_vector_chains(), st.integers(1, 2), st.integers(1, 3))
def test_random_channel_blocked_chains_match_the_interpreter(chain, threads, batch):
    graph = load(*chain)
    assume(blocked_of(graph))
    compile_and_check(graph, batch=batch, seed=1, opt_level=2, threads=threads, march=AVX512)


@pytest.mark.parametrize("case", ["depthwise-to-c-h-w", "stride2"])
def test_without_vector_shuffles_the_tile_transposes_through_memory(case):
    """GCC before 12 has vector extensions but no __builtin_shufflevector: CONVC_HAS_SHUFFLE=0 takes that path."""
    graph = load(*CASES[case])
    compile_and_check(graph, batch=2, seed=6, opt_level=2, threads=2, cflags=["-DCONVC_HAS_SHUFFLE=0"], march=AVX512)


@pytest.mark.parametrize("case", ["7x7", "stride2", "depthwise-to-c-h-w", "large-map-stride2", "global-avgpool",
                                  "pools", "concat", "bn-relu-concat", "se-scale"])
def test_eight_lane_blocks_as_on_avx2(case):
    """AVX2 targets get 8-lane vectors, blocks and transposes: the same kernels at L = 8."""
    graph = load(*CASES[case])
    assert blocked_of(graph, target=AVX2) and set(kernel_plan(graph, AVX2)[1].layouts.values()) == {8}
    assert "[C/8][H][W][8]" in compiler.generate_c(graph, opt_level=2, march=AVX2).code
    compile_and_check(graph, batch=2, seed=7, opt_level=2, threads=2, march=AVX2)
