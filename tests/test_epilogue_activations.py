"""The activations fused into conv/dense epilogues (compiler/ops/fused.py FUSABLE, templates/ops/_epilogue.c.j2):
sigmoid, tanh, silu, hardswish, hardsigmoid and gelu (erf and tanh forms) become one fused layer at opt level >= 1,
every conv kernel family computes them in its vector and scalar stores (and in the portable path), and the in-line
exp, tanh and erf they use are accurate to a few float32 ulps, at large magnitudes too.

Kernel tests state their target (AVX2: 8 lanes, AVX-512: 16) and compare with the float64 interpreter on the
unoptimized graph (rtol 1e-4, atol 1e-5). Their weights are multiples of 1/4 and their inputs multiples of 1/8, so
that a conv's sum is exact in float32 and only the activation can differ (Winograd's transforms round)."""
from __future__ import annotations

import dataclasses
import math
import shutil
import subprocess
import warnings

import numpy as np
import pytest

import compiler
from compiler.codegen import environment
from compiler.passes import optimize
from conftest import AVX512, TARGET_IDS, TARGETS, assert_close, kernel_plan, model_dict, runnable

ACTIVATIONS = {"silu": {"op": "silu"}, "sigmoid": {"op": "sigmoid"}, "tanh": {"op": "tanh"}, "gelu": {"op": "gelu"},
               "gelu_tanh": {"op": "gelu", "approximate": "tanh"}, "hardswish": {"op": "hardswish"},
               "hardsigmoid": {"op": "hardsigmoid", "alpha": 0.2, "beta": 0.4}}


def conv(name, filters, kernel=1, inputs=None, **kw):
    return {"name": name, "op": "conv2d", "filters": filters, "kernel": kernel, **({"inputs": inputs} if inputs else {}),
            **kw}


def branches(make_layer, reader=None):
    """One branch per activation, all reading the model input: a layer (conv or dense) then the activation, and
    optionally a reader of the activation (so that the fused layer's output may be channel-blocked)."""
    layers = []
    for name, act in ACTIVATIONS.items():
        layers += [make_layer(f"{name}_l"), {**act, "name": name, "inputs": [f"{name}_l"]}]
        if reader:
            layers.append(reader(f"{name}_r", name))
    return layers


# family -> (layers, input shape, the templates its fused layers must use)
FAMILIES = {
    "direct": (branches(lambda n: conv(n, 20, 3, ["x"], stride=2, padding=2, dilation=2)), (16, 11, 13),
               {"ops/conv2d_direct.c.j2"}),
    "direct-blocked-output": (branches(lambda n: conv(n, 32, 3, ["x"], padding=2, dilation=2),
                                       lambda n, src: conv(n, 16, 3, [src], stride=2, padding=1)), (12, 7, 9),
                              {"ops/conv2d_direct.c.j2"}),
    "winograd": (branches(lambda n: conv(n, 32, 3, ["x"], padding=1)), (32, 20, 19), {"ops/conv2d_winograd.c.j2"}),
    "pointwise": (branches(lambda n: conv(n, 16, 1, ["x"])), (16, 16, 18), {"ops/conv2d_pointwise.c.j2"}),
    "depthwise": (branches(lambda n: conv(n, 24, 3, ["x"], groups=24, stride=2, padding=1)), (24, 17, 16),
                  {"ops/conv2d_depthwise.c.j2"}),
    "depthwise-blocked": (branches(lambda n: conv(n, 32, 3, [f"{n}_e"], groups=32, padding=1),
                                   lambda n, src: conv(n, 16, 1, [src])), (12, 7, 7),
                          {"ops/conv2d_depthwise_blocked.c.j2"}),
    "rowvec": (branches(lambda n: conv(n, 8, 5, ["x"], stride=2, padding=2)), (3, 6, 101), {"ops/conv2d_rowvec.c.j2"}),
    "grouped": (branches(lambda n: conv(n, 6, 3, ["x"], groups=3, padding=1)), (6, 7, 7), {"ops/conv2d_grouped.c.j2"}),
    "grouped-blocked": (branches(lambda n: conv(n, 32, 3, [f"{n}_e"], groups=4, padding=1),
                                 lambda n, src: conv(n, 16, 1, [src])), (12, 7, 7), {"ops/conv2d_grouped.c.j2"}),
    "dense": (branches(lambda n: {"name": n, "op": "dense", "units": 7, "inputs": ["x"]}), (40,),
              {"ops/dense.c.j2"}),  # fewer units than lanes: one dot product per unit
    "dense-blocked": (branches(lambda n: {"name": n, "op": "dense", "units": 21, "inputs": ["x"]}), (40,),
                      {"ops/dense_blocked.c.j2"}),  # a part-filled last vector
}
# the blocked families' depthwise and grouped convs read a 1×1 expansion (blocked between them)
for _family in ("depthwise-blocked", "grouped-blocked"):
    FAMILIES[_family] = ([conv(f"{n}_l_e", 32, 1, ["x"]) for n in ACTIVATIONS] + FAMILIES[_family][0],
                         *FAMILIES[_family][1:])


def exact_graph(family: str):
    """The family's model with weights that are multiples of 1/4 (sums of products with 1/8-inputs are exact)."""
    layers, shape, _ = FAMILIES[family]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", compiler.ConvcWarning)
        graph = compiler.load(model_dict(layers, shape=shape))
    rng = np.random.default_rng(7)
    for key, w in graph.weights.items():
        graph.weights[key] = (rng.integers(-2, 3, w.shape) * 0.25).astype(np.float32)
    return graph


def eighths(shape, scale, seed=0, batch=2):
    return (np.round(np.random.default_rng(seed).standard_normal((batch, *shape)) * scale * 8) / 8).astype(np.float32)


def test_every_fusable_activation_fuses_into_convs_and_dense_at_level_1():
    for family in ("pointwise", "dense"):
        opt = optimize(exact_graph(family), 1)
        fused = {layer.name: layer for layer in opt.layers() if layer.op.startswith("fused_")}
        assert set(fused) == set(ACTIVATIONS), family
        assert fused["hardsigmoid"].attrs.activation == "hardsigmoid"
        assert dict(fused["hardsigmoid"].attrs.activation_attrs) == {"alpha": 0.2, "beta": 0.4}
        assert dict(fused["gelu_tanh"].attrs.activation_attrs) == {"approximate": "tanh"}
        assert optimize(exact_graph(family), 0).layer("silu").op == "silu"


def test_the_fused_reference_is_the_op_reference():
    graph = exact_graph("pointwise")
    x = eighths((16, 16, 18), 2.0)
    want = compiler.interpret(graph, {"x": x}, dtype=np.float64)
    got = compiler.interpret(optimize(graph, 1), {"x": x}, dtype=np.float64)
    for name in ACTIVATIONS:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-12, atol=1e-12)


def check_activations(graph, model, x, target):
    """Each fused layer's output vs its activation (float64) of the same layer computed without the activation by
    the same kernel family: this isolates the epilogue even where the conv rounds (Winograd)."""
    pre_graph = dataclasses.replace(graph, outputs=[f"{name}_l" for name in ACTIVATIONS])
    pre = compiler.compile(pre_graph, opt_level=2, march=runnable(target)).run({"x": x})
    got = model.run({"x": x})
    for name in [n for n in ACTIVATIONS if n in graph.outputs]:  # (else read by a conv: checked below)
        layer = graph.layer(name)
        assert np.all(np.isfinite(got[name])), name
        assert_close(got[name], layer.spec.reference(layer, [pre[f"{name}_l"].astype(np.float64)], {}))
    return got


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_fused_activations_in_every_kernel_family(family, target):
    graph = exact_graph(family)
    optimized, plan = kernel_plan(graph, target, 2)
    templates = {plan[name].template for name in ACTIVATIONS}
    assert templates == FAMILIES[family][2], templates
    assert all(optimized.layer(name).op.startswith("fused_") for name in ACTIVATIONS)
    model = compiler.compile(graph, opt_level=2, march=runnable(target))
    for scale in (2.0, 60.0):  # 60: conv outputs in the hundreds, where exp overflows and tanh/erf saturate
        x = eighths(graph.shape("x"), scale)
        got = check_activations(graph, model, x, target)
        if family != "winograd":  # where the convs are exact, every output (the readers' too) vs the interpreter
            ref = compiler.interpret(graph, {"x": x}, dtype=np.float64)
            for name in graph.outputs:
                assert_close(got[name], ref[name])


@pytest.mark.parametrize("family", ["direct-blocked-output", "winograd", "depthwise-blocked", "rowvec", "pointwise",
                                    "grouped-blocked"])
def test_the_portable_path_computes_the_same(family):
    """-DCONVC_NO_VECTOR_EXTENSIONS: the scalar twins of the vector steps (AVX-512's kernel parameters)."""
    graph = exact_graph(family)
    model = compiler.compile(graph, opt_level=2, march=runnable(AVX512), cflags=["-DCONVC_NO_VECTOR_EXTENSIONS"])
    check_activations(graph, model, eighths(graph.shape("x"), 30.0, seed=1), AVX512)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_fused_activations_are_pedantic_c99(tmp_path):
    graph = exact_graph("pointwise")
    for level in (1, 2):
        (tmp_path / "m.c").write_text(compiler.generate_c(graph, opt_level=level, weights_mode="array").code)
        proc = subprocess.run(["gcc", "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-c", "m.c"],
                              cwd=tmp_path, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[:2000]


# ---------------------------------------------------------------- the in-line math, value by value
HARNESS = """
#include <math.h>
#include <string.h>
{% import "ops/_epilogue.c.j2" as epilogue %}
{% for kind in kinds %}
void scalar_{{ kind }}(const float *x, float *y, int n)
{
    for (int i = 0; i < n; ++i) {
        float v = x[i];
        {{ epilogue[kind](step, false) | indent(8) }}
        y[i] = v;
    }
}

void vector_{{ kind }}(const float *x, float *y, int n)
{
    typedef float convc_vec __attribute__((vector_size(32)));
    typedef int convc_ivec __attribute__((vector_size(32)));
#define convc_splat(s) ((convc_vec){ (s), (s), (s), (s), (s), (s), (s), (s) })
    for (int i = 0; i < n; i += 8) {
        convc_vec v;
        memcpy(&v, x + i, sizeof v);
        {{ epilogue[kind](step, true) | indent(8) }}
        memcpy(y + i, &v, sizeof v);
    }
#undef convc_splat
}
{% endfor %}
"""
KINDS = {  # the float64 definition of each step
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "silu": lambda x: x / (1.0 + np.exp(-x)),
    "tanh": np.tanh,
    "gelu": lambda x: 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0))),
    # x/2·(1 + tanh(u)) as x·sigmoid(2u): the same value, without float64's cancellation where tanh(u) nears −1
    "gelu_tanh": lambda x: x / (1.0 + np.exp(-2.0 * math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3))),
    "hardswish": lambda x: x * np.clip(x + 3.0, 0.0, 6.0) / 6.0,
}
# Error bound: a few float32 ulps of the exact result, plus what rounding the argument costs where the function
# magnifies it: gelu: |x|·2^-22, erf's few ulps near −1 and the rounding of 1 + erf(x/√2) that torch's float32 formula
# has too (they dominate where 1 + erf cancels, x < −3); gelu_tanh: |y|·|2u|·2^-22, exp(−2u)'s condition number times
# the rounding of u = √(2/π)·(x + 0.044715·x³); silu and gelu_tanh: |x|·2^-149, exp rounded to a subnormal
# (x < −87), times x.
ULPS = {"sigmoid": 4, "silu": 4, "tanh": 4, "gelu": 4, "gelu_tanh": 4, "hardswish": 3}


def allowed_error(kind: str, x: np.ndarray, want: np.ndarray, ulp: np.ndarray) -> np.ndarray:
    extra = {"gelu": lambda: np.abs(x) * 2.0 ** -22,
             "gelu_tanh": lambda: np.abs(want) * 2 * math.sqrt(2 / math.pi) * np.abs(x + 0.044715 * x.astype(
                 np.float64) ** 3) * 2.0 ** -22 + np.abs(x) * 2.0 ** -149,
             "silu": lambda: np.abs(x) * 2.0 ** -149}.get(kind, lambda: 0.0)()
    return ULPS[kind] * ulp + extra


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    import cffi
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("needs a C compiler")
    folder = tmp_path_factory.mktemp("epilogue_math")
    code = environment().from_string(HARNESS).render(kinds=list(KINDS), step=None)
    (folder / "h.c").write_text(code)
    libs = {}
    for label, flags in (("O2", ["-O2"]), ("O3-native", ["-O3", "-march=native"])):
        out = folder / f"h_{label}.so"
        proc = subprocess.run([cc, "-std=gnu99", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", *flags, "h.c",
                               "-o", out.name, "-lm"], cwd=folder, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[:3000]
        ffi = cffi.FFI()
        ffi.cdef("".join(f"void {f}_{k}(const float *x, float *y, int n);" for k in KINDS for f in ("scalar", "vector")))
        libs[label] = (ffi, ffi.dlopen(str(out)))
    return libs


def _inputs() -> np.ndarray:
    """Dense near 0, every binade up to float32's largest, both signs, and the switch points of the formulas."""
    rng = np.random.default_rng(0)
    mags = np.concatenate([np.linspace(0, 10, 40001), np.exp(rng.uniform(np.log(1e-30), np.log(3e38), 20000)),
                           [0.625, 0.6249999, 4 * math.sqrt(2), 5.65, 87.0, 88.5, 88.8, 89.0, 103.9, 104.5, 1e6, 1e19]])
    x = np.concatenate([mags, -mags]).astype(np.float32)
    return np.concatenate([x, np.zeros((-len(x)) % 8, np.float32)])


@pytest.mark.parametrize("flags", ["O2", "O3-native"])
@pytest.mark.parametrize("form", ["scalar", "vector"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_inline_math_is_accurate_to_a_few_ulps(harness, kind, form, flags):
    ffi, lib = harness[flags]
    x = _inputs()
    y = np.empty_like(x)
    getattr(lib, f"{form}_{kind}")(ffi.cast("const float *", x.ctypes.data), ffi.cast("float *", y.ctypes.data), len(x))
    with np.errstate(over="ignore", invalid="ignore"):
        want = KINDS[kind](x.astype(np.float64))
    assert np.all(np.isfinite(y)), x[~np.isfinite(y)][:5]
    ulp = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    allowed = allowed_error(kind, x, want, ulp)
    err = np.abs(y - want)
    worst = int(np.argmax(err / allowed))
    assert np.all(err <= allowed), (f"{kind} ({form}, {flags}): x = {x[worst]!r}: got {y[worst]!r}, exact "
                                    f"{want[worst]!r}, {err[worst] / ulp[worst]:.1f} ulps")


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
def test_batchnorm_then_an_activation_is_one_pass(target):
    """A batchnorm no conv absorbs (it reads the model input, as DenseNet's read a concat), then each activation,
    and one with a residual add before a ReLU: one fused_batchnorm each, against the float64 interpreter."""
    layers = branches(lambda n: {"name": n, "op": "batchnorm", "inputs": ["x"]})
    layers += [{"name": "bn", "op": "batchnorm", "inputs": ["x"]}, {"name": "sum", "op": "add", "inputs": ["bn", "x"]},
               {"name": "relu", "op": "relu", "inputs": ["sum"]}]
    graph = compiler.load(model_dict(layers, shape=(6, 5, 7), outputs=[*ACTIVATIONS, "relu"]))
    optimized, plan = kernel_plan(graph, target, 2)
    fused = {layer.name: layer for layer in optimized.layers() if layer.op == "fused_batchnorm"}
    assert set(fused) == {*ACTIVATIONS, "relu"} and fused["relu"].inputs == ("x", "x") and fused["relu"].attrs.act_min == 0
    assert {plan[name].template for name in fused} == {"ops/batchnorm.c.j2"}
    for scale in (2.0, 60.0):
        x = eighths(graph.shape("x"), scale)
        model = compiler.compile(graph, opt_level=2, march=runnable(target))
        got = model.run({"x": x})
        ref = compiler.interpret(graph, {"x": x}, dtype=np.float64)
        for name in fused:
            assert np.all(np.isfinite(got[name])), name
            assert_close(got[name], ref[name])
