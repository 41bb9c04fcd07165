"""The pointwise kernel (compiler/kernels/pointwise.py): 1×1 convs as a matrix product along the pixels of a C×H×W
tensor. With 16 registers (AVX2) its 6 × 2 register blocks pin their pixel vectors in registers and its items run
over spans of pixel chunks (pixel_span); with 32 (AVX-512) an item is one chunk of 8 × 3. Compared with the
float64 interpreter on both targets, L2 shrunk (dataclasses.replace) so that small layers take several spans."""
from __future__ import annotations

import dataclasses

import pytest

import compiler
from compiler.kernels.pointwise import SPAN_L2_SHARE, pixel_span
from conftest import TARGET_IDS, TARGETS, compile_and_check, kernel_plan, model_dict

SMALL_L2 = 16 * 1024  # 4 KB of input a span: 2 chunks of 16 pixels of 24 channels


def conv(name, filters, inputs):
    return {"name": name, "op": "conv2d", "filters": filters, "kernel": 1, "inputs": inputs}


def residual_net(filters):
    """p = relu(c(x) + side(x)): the residual and the activation fused into the pointwise conv."""
    return [conv("c", filters, ["x"]), conv("side", filters, ["x"]), {"name": "s", "op": "add", "inputs": ["c", "side"]},
            {"name": "p", "op": "relu", "inputs": ["s"]}]


def pointwise_params(graph, target):
    plan = kernel_plan(graph, target, kernels={"c": "pointwise", "side": "pointwise"})[1]
    return [c.params for c in plan.choices.values() if c.kernel == "pointwise"]


def test_a_span_keeps_its_input_within_a_quarter_of_l2():
    avx2, avx512 = TARGETS
    assert avx2.l2_bytes == 1 << 20 and SPAN_L2_SHARE == 0.25
    assert pixel_span(64, 16, 196, avx2) == 64  # 64 channels × 1,024 pixels × 4 bytes: 256 KB, a quarter of L2
    assert pixel_span(4096, 16, 196, avx2) == 1  # more channels than a quarter of L2 holds for one chunk
    assert pixel_span(8, 16, 5, avx2) == 5  # never past the layer's chunks
    assert pixel_span(64, 48, 196, avx512) == 1


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("shape, filters", [((24, 37, 41), 40), ((8, 16, 16), 20)])
def test_pointwise_spans_match_the_interpreter(shape, filters, target):
    """37×41 = 1,517 pixels: 94 whole chunks and a tail of 13 pixels (a part-filled vector) in the last, short
    span; 40 and 20 filters leave the last 6-filter block part filled. The small input of 8×16×16 fits the
    cache, so filter blocks run outermost there."""
    small = dataclasses.replace(target, l2_bytes=SMALL_L2)
    graph = compiler.load(model_dict(residual_net(filters), shape=shape, name="spans", seed=9))
    params = pointwise_params(graph, small)
    assert len(params) == 2 and any(p.residual for p in params)  # side, and c with the add and relu fused
    for p in params:
        if target.vector_registers == 16:
            assert (p.MR, p.NR) == (6, 2) and p.PARTIAL_LAST and p.PIN_INPUT
            assert p.SPAN == max(1, min(p.NCH, int(SPAN_L2_SHARE * SMALL_L2) // (4 * p.C * p.CHUNK_FLOATS)))
            if shape[0] == 24:
                assert p.SPAN > 1 and p.NCH % p.SPAN and p.PARTIAL and p.pixels_outer
            else:
                assert not p.pixels_outer
        else:
            assert (p.MR, p.NR, p.SPAN) == (8, 3, 1) and not p.PIN_INPUT
        assert p.SPANS * p.SPAN >= p.NCH > (p.SPANS - 1) * p.SPAN and p.ITEMS == p.KB * p.SPANS
    compile_and_check(graph, batch=2, march=small, kernels={"c": "pointwise", "side": "pointwise"})
