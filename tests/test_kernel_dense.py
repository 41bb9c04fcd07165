"""The blocked dense kernel (compiler/kernels/dense.py, dense_blocked): vectors along the units, weights packed per
block of 8 unit vectors. Unit counts that leave a short last block, a part-filled last vector, several whole
blocks, a block split across threads; a fused activation and residual add; no bias; checked against the
float64 interpreter on both targets, and through the portable scalar path."""
from __future__ import annotations

import numpy as np
import pytest

import compiler
from compiler.kernels.dense import DENSE_BLOCK_VECTORS, DENSE_PREFETCH_BYTES
from conftest import AVX512, TARGET_IDS, TARGETS, compile_and_check, kernel_plan, model_dict


def dense_net(units, n_in=(6, 5, 5), bias=True, act=None, residual=False):
    layers = [{"name": "fc", "op": "dense", "units": units, "bias": bias, "inputs": ["x"]}]
    if residual:
        layers += [{"name": "side", "op": "dense", "units": units, "inputs": ["x"]},
                   {"name": "sum", "op": "add", "inputs": ["fc", "side"]}]
    if act:
        layers += [{"name": "act", "op": act, "inputs": [layers[-1]["name"]]}]
    return compiler.load(model_dict(layers, shape=n_in, name="dense", seed=7))


# units -> what they exercise (lanes: 8 on AVX2, 16 on AVX-512; blocks of 8 vectors)
UNITS = {
    20: "one block, a part-filled last vector",
    64: "AVX2: one whole block; AVX-512: four whole vectors",
    120: "LeNet-5's fc1: AVX2 one block and a tail of 7 vectors",
    128: "whole vectors, one block (AVX-512) or two (AVX2)",
    300: "whole blocks, then a short tail ending part-filled",
}


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("units", sorted(UNITS))
def test_blocked_dense_matches_the_interpreter(units, target):
    graph = dense_net(units)
    plan = kernel_plan(graph, target)[1]
    p = plan["fc"].params
    assert plan["fc"].kernel == "dense_blocked"
    assert p.KV == min(DENSE_BLOCK_VECTORS, -(-units // target.lanes)) and p.PARTIAL == units % target.lanes
    assert p.FULL_BLOCKS * p.BLOCK_UNITS + len(p.tail_vectors) * p.VL >= units
    # AVX-512 prefetches every line of a row DENSE_PREFETCH_BYTES ahead, AVX2 nothing
    ahead = DENSE_PREFETCH_BYTES // 4 if target.lanes == 16 else None
    for lines, stride in ((p.prefetch, p.BLOCK_UNITS), (p.tail_prefetch, len(p.tail_vectors) * p.VL)):
        assert lines == (tuple(range(ahead, ahead + stride, 16)) if ahead else ())
    compile_and_check(graph, batch=3, march=target)


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("act", ["relu", "silu", "tanh"])
def test_fused_activation_and_residual(act, target):
    graph = dense_net(44, bias=False, act=act, residual=True)
    optimized, plan = kernel_plan(graph, target)
    fused = [n for n, c in plan.choices.items() if c.kernel == "dense_blocked" and c.params.residual]
    assert len(fused) == 1 and plan[fused[0]].params.activation, plan
    compile_and_check(graph, batch=3, march=target)


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
def test_threads_split_the_blocks(target):
    """2,048 -> 1,000 (ResNet-50's classifier): 2 M multiply-adds, threaded over its blocks of units."""
    graph = dense_net(1000, n_in=(2048,), act="relu")
    plan = kernel_plan(graph, target)[1]
    (name,) = plan.choices
    assert plan[name].kernel == "dense_blocked" and plan[name].params.parallel and plan[name].params.BLOCKS > 2
    model, _, _ = compile_and_check(graph, batch=2, march=target, threads=2)
    model.set_threads(1)
    x = np.random.default_rng(1).standard_normal((2, 2048)).astype(np.float32)
    one = model(x)
    model.set_threads(2)
    np.testing.assert_array_equal(model(x), one)  # the blocks' sums do not depend on the split


def test_few_units_keep_the_dot_product_kernel():
    for target in TARGETS:
        plan = kernel_plan(dense_net(target.lanes - 1), target)[1]
        assert plan["fc"].kernel == "dense_vector"


def test_the_portable_path_computes_the_same():
    """-DCONVC_NO_VECTOR_EXTENSIONS: the scalar loops read the same packed weights."""
    for units in (20, 300):
        compile_and_check(dense_net(units, act="silu", residual=True), batch=2, march=AVX512,
                          cflags=["-DCONVC_NO_VECTOR_EXTENSIONS"])
