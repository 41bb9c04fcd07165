"""The pointwise kernel (compiler/kernels/pointwise.py): 1×1 convs as a matrix product along the pixels of a C×H×W
tensor. With 16 registers (AVX2) its 6 × 2 register blocks pin their pixel vectors in registers, and its items run
over spans of pixel chunks (pixel_span) or, with 4 or more filter blocks, one chunk each whose input is packed into
panels (uses_panel); with 32 (AVX-512) an item is one chunk of 8 × 3. Compared with the float64 interpreter on both
targets, L2 (and L1) shrunk (dataclasses.replace) so that small layers take several spans (and panels)."""
from __future__ import annotations

import dataclasses
import shutil
import subprocess

import pytest

import compiler
from compiler.kernels.pointwise import PANEL_MIN_BLOCKS, SPAN_L2_SHARE, panel_channels, pixel_span, uses_panel
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
@pytest.mark.parametrize("shape, filters", [((24, 37, 41), 16), ((8, 16, 16), 10)])
def test_pointwise_spans_match_the_interpreter(shape, filters, target):
    """37×41 = 1,517 pixels: 94 whole chunks and a tail of 13 pixels (a part-filled vector) in the last, short
    span; 16 and 10 filters (fewer blocks than a panel needs) leave the last 6-filter block part filled. The
    small input of 8×16×16 fits the cache, so filter blocks run outermost there."""
    small = dataclasses.replace(target, l2_bytes=SMALL_L2)
    graph = compiler.load(model_dict(residual_net(filters), shape=shape, name="spans", seed=9))
    params = pointwise_params(graph, small)
    assert len(params) == 2 and any(p.residual for p in params)  # side, and c with the add and relu fused
    for p in params:
        assert not p.PANEL
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


def test_panels_split_the_input_channels_evenly_within_half_of_l1():
    avx2 = TARGETS[0]
    assert panel_channels(192, 16, avx2) == (192, 1)  # 192 rows of 64 bytes: 12 KB of a 32 KB L1
    assert panel_channels(512, 16, avx2) == (256, 2)
    assert panel_channels(600, 16, avx2) == (200, 3)  # not 256 + 256 + 88


def test_panels_go_where_many_input_rows_meet_few_output_rows():
    avx2, avx512 = TARGETS
    assert uses_panel(288, 64, 11, 288 * 66 * 4, avx2)  # Inception v3's 35×35 1×1s
    assert not uses_panel(64, 256, 43, 64 * 258 * 4, avx2)  # SqueezeNet's expand layers: more output rows
    assert not uses_panel(512, 128, 22, 512 * 132 * 4, avx2)  # more than 64 filters
    assert not uses_panel(96, 16, 3, 96 * 18 * 4, avx2)  # too few filter blocks to share the copy
    assert not uses_panel(288, 64, 11, 288 * 66 * 4, avx512)


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("l1d, panels", [(None, 1), (2048, 3)])
@pytest.mark.parametrize("threads", [1, 2])
def test_pointwise_panels_match_the_interpreter(l1d, panels, threads, target):
    """48 -> 20 filters (4 blocks, the last part filled) over 37×41 pixels (a tail of 13) with the residual and
    relu fused: packed into one panel per chunk, or, with L1 shrunk to 2 KB, three of 16 channels each, the later
    ones going on from the partial sums the one before stored in the output."""
    small = dataclasses.replace(target, l2_bytes=SMALL_L2, l1d_bytes=l1d or target.l1d_bytes)
    graph = compiler.load(model_dict(residual_net(20), shape=(48, 37, 41), name="panels", seed=3))
    params = pointwise_params(graph, small)
    assert len(params) == 2 and any(p.residual for p in params)
    for p in params:
        if target.vector_registers == 16:
            assert p.PANEL and p.KB >= PANEL_MIN_BLOCKS and p.PARTIAL_LAST and p.PARTIAL
            assert (p.C_CHUNKS, p.C_CHUNK * p.C_CHUNKS) == (panels, 48) and p.ITEMS == p.NCH
        else:
            assert not p.PANEL and p.C_CHUNKS == 1
    compile_and_check(graph, batch=2, march=small, threads=threads, kernels={"c": "pointwise", "side": "pointwise"})
    if threads == 1 and shutil.which("gcc"):  # the panel's C is plain C99 too
        code = compiler.generate_c(graph, opt_level=2, march=small, kernels={"c": "pointwise", "side": "pointwise"},
                                   weights_mode="array").code
        for flags in ([], ["-DCONVC_NO_VECTOR_EXTENSIONS"]):
            proc = subprocess.run(["gcc", "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-O2", *flags, "-c",
                                   "-x", "c", "-", "-o", "/dev/null"], input=code, capture_output=True, text=True)
            assert proc.returncode == 0, proc.stderr[:2000]
