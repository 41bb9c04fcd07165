"""The direct kernel's cache blocking (compiler/kernels/direct.py, channel_chunks): a layer whose register
block's weights outgrow L2 takes its input channels in chunks, the partial sums kept between them.

Real layers need over 1,000 channels for that (fcn_resnet50's 3×3 head over 2,048); these tests shrink the
target's L2 instead (dataclasses.replace), so small layers are chunked, and compare the compiled model with the
float64 interpreter on both targets (AVX2: 4 × 3 register blocks; AVX-512: 2 × 12 or 4 × 6)."""
from __future__ import annotations

import dataclasses

import pytest

import compiler
from compiler.kernels.direct import channel_chunks
from compiler.codegen import render
from conftest import TARGET_IDS, TARGETS, compile_and_check, kernel_plan, lowered, model_dict

SMALL_L2 = 160 * 1024  # a chunk's weights: at most 40 KB (AVX-512's 4 × 6 blocks of 128 filters: 16 channels, 37 KB)


def small_l2(target):
    return dataclasses.replace(target, l2_bytes=SMALL_L2)


def conv(name, filters, kernel, inputs, **kw):
    return {"name": name, "op": "conv2d", "filters": filters, "kernel": kernel, "inputs": inputs, **kw}


# name -> (input shape, layers): the chunked conv is "c"
NETS = {
    # C×H×W input, padded 3×3, C×H×W output (the model's)
    "3x3-padded": ((256, 9, 11), [conv("c", 32, 3, ["x"], padding=1)]),
    # stride 2, 5×3, no bias, ReLU
    "5x3-stride2-relu": ((96, 13, 10), [conv("c", 32, [5, 3], ["x"], stride=2, padding=[2, 1], bias=False),
                                        {"name": "r", "op": "relu", "inputs": ["c"]}]),
    # channel-blocked input and output (1×1 convs around it), residual add and ReLU fused
    "blocked-residual": ((128, 8, 9), [conv("e", 128, 1, ["x"]), {"name": "er", "op": "relu", "inputs": ["e"]},
                                      conv("c", 128, 3, ["er"], padding=1),
                                      {"name": "s", "op": "add", "inputs": ["c", "er"]},
                                      {"name": "sr", "op": "relu", "inputs": ["s"]},
                                      conv("p", 32, 1, ["sr"])]),
    # 20 filters: the last vector part empty, the output stored one value at a time
    "partial-filters": ((512, 7, 9), [conv("c", 20, 3, ["x"], padding=1)]),
    # more output rows than one item holds (rows per item < OH)
    "tall": ((256, 40, 33), [conv("c", 32, 3, ["x"], padding=1)]),
}


def chunked_layer(plan):
    """The one chunked layer's params (the conv c, fused or not)."""
    chunked = [c for c in plan.choices.values() if c.kernel == "direct" and c.params.CHUNKED]
    assert len(chunked) == 1, {n: c.kernel for n, c in plan.choices.items()}
    return chunked[0].params


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("net", sorted(NETS))
def test_chunked_conv_matches_the_interpreter(net, target):
    shape, layers = NETS[net]
    graph = compiler.load(model_dict(layers, shape=shape, name="chunked", seed=5))
    small, direct = small_l2(target), {"c": "direct"}  # (3×3 stride 1 would take Winograd)
    p = chunked_layer(kernel_plan(graph, small, kernels=direct)[1])
    assert p.CHUNK < p.C and p.C % p.CHUNK == 0 and p.CHUNK_BYTES <= SMALL_L2 // 4
    if net == "tall":
        assert p.ROWS < p.OH and p.OH % p.ROWS and p.ROW_ITEMS * p.ROWS >= p.OH  # the last item stops at OH
    if net == "blocked-residual":
        assert p.XB and p.YB and p.residual
    if net == "partial-filters":
        assert p.PARTIAL_LAST
    compile_and_check(graph, batch=2, march=small, kernels=direct)


def test_weights_that_fit_l2_are_not_chunked_with_32_registers():
    avx512 = TARGETS[1]
    graph = compiler.load(model_dict(NETS["3x3-padded"][1], shape=NETS["3x3-padded"][0], name="whole"))
    plan = kernel_plan(graph, avx512, kernels={"c": "direct"})[1]
    assert not plan["c"].params.CHUNKED and plan["c"].params.CHUNK == plan["c"].params.C


def test_avx2_chunks_weights_that_outgrow_l1():
    """With 16 registers the rule holds one level down: weights past half of L1 (16 KB) in chunks of an eighth of
    L1 (4 KB: 32 channels of a 1×1 conv) or, for a 3×3 kernel, one step of 8 channels (9 KB), for items of two
    rows or more whose partial sums take at most half of L1. With 4 × 3 blocks, a 1024 -> 256 1×1 at 14×14:
    128 KB a block, 32 channels a chunk, 9 rows (16 KB of sums) an item; a 2048 -> 512 1×1 at 7×7 cut into one
    row of 49: none; 128 -> 512 (16 KB): none."""
    avx2 = TARGETS[0]
    assert avx2.vector_registers == 16 and avx2.l1d_bytes == 32 * 1024
    assert channel_chunks(1024, 1, 4, 8, 8, 14, 14, avx2) == (32, 9)
    assert channel_chunks(256, 1, 4, 8, 8, 56, 56, avx2) == (32, 2)  # 56-pixel rows: two rows of sums in 14 KB
    assert channel_chunks(512, 9, 4, 8, 8, 7, 7, avx2) == (8, 7)  # 3×3: 1,152 bytes a channel
    assert channel_chunks(2048, 1, 4, 8, 8, 1, 49, avx2) == (2048, 1)  # one row an item
    assert channel_chunks(128, 1, 4, 8, 8, 14, 14, avx2) == (128, 1)  # 16 KB: stays in L1
    assert channel_chunks(1024, 1, 2, 16, 16, 14, 14, TARGETS[1]) == (1024, 1)  # AVX-512: fits L2


@pytest.mark.parametrize("shape", [(640, 10, 12), (96, 14, 14)])
def test_avx2_l1_chunks_match_the_interpreter(shape):
    """A 1×1 conv chunked for L1 (640 channels: 80 KB a block, chunks of 32) between channel-blocked tensors
    with a residual, and a 3×3 one from the model's C×H×W input (96 channels: 108 KB, chunks of 8)."""
    avx2 = TARGETS[0]
    c = shape[0]
    layers = ([conv("e", c, 1, ["x"]), {"name": "er", "op": "relu", "inputs": ["e"]}, conv("c", 32, 1, ["er"]),
               conv("side", 32, 1, ["er"]), {"name": "s", "op": "add", "inputs": ["c", "side"]},
               {"name": "sr", "op": "relu", "inputs": ["s"]}, conv("p", 16, 1, ["sr"])] if c == 640 else
              [conv("c", 32, 3, ["x"], padding=1), {"name": "r", "op": "relu", "inputs": ["c"]}])
    graph = compiler.load(model_dict(layers, shape=shape, name="l1chunks", seed=7))
    direct = {n: "direct" for n in (("e", "c", "side", "p") if c == 640 else ("r",))}
    plan = kernel_plan(graph, avx2, kernels=direct)[1]
    p = next(ch.params for n, ch in plan.choices.items() if ch.kernel == "direct" and ch.params.C == c and ch.params.K == 32)
    assert p.CHUNKED and p.CHUNK_BYTES <= avx2.l1d_bytes // 2 and p.ROWS >= 2
    assert p.PART_VECTORS * 32 <= avx2.l1d_bytes // 2  # the partial sums: at most half of L1
    compile_and_check(graph, batch=2, march=avx2, kernels=direct)


def test_chunk_sizes():
    """fcn_resnet50's head (3×3, 2,048 → 512 at 28×28) on a 1 MB L2: AVX-512's 2 × 16 filters take 1,152 bytes
    of weights per input channel, 2.4 MB in all; chunks of 128 channels (147 KB) fit a quarter of L2. Rows per
    item keep the partial sums within 32 KB: 9 rows of 28 × 32 filters."""
    avx512 = TARGETS[1]
    assert channel_chunks(2048, 9, 2, 16, 16, 28, 28, avx512) == (128, 9)
    assert channel_chunks(256, 9, 2, 16, 16, 28, 28, avx512) == (256, 1)  # 295 KB: fits L2
    assert channel_chunks(2048, 1, 2, 16, 16, 28, 28, avx512) == (2048, 1)  # a 1×1 conv's 256 KB
    assert channel_chunks(2048, 9, 2, 16, 16, 300, 300, avx512) == (2048, 1)  # one row's sums: 38 KB > 32 KB


@pytest.mark.parametrize("kernel, padding", [(5, 0), (5, 2), (3, 1), ([1, 3], [0, 1])])
def test_avx2_wide_kernels_take_two_by_four_blocks(kernel, padding):
    """AVX2, 16 filters (2 vectors): kernels wider than one column take 2 × 4 register blocks (2 × 6's
    accumulators left GCC no registers for the input broadcasts it shares across the kernel columns); 1×1
    convs keep 2 × 6. Rows of 10 and 14 pixels leave a short last block."""
    layers = [conv("c", 16, kernel, ["x"], padding=padding), {"name": "r", "op": "relu", "inputs": ["c"]},
              conv("p", 16, 1, ["r"])]
    graph = compiler.load(model_dict(layers, shape=(6, 14, 14), name="narrow", seed=3))
    avx2 = TARGETS[0]
    plan = kernel_plan(graph, avx2, kernels={"c": "direct", "p": "direct"})[1]
    convs = {n: c.params for n, c in plan.choices.items() if c.kernel == "direct"}
    wide = next(p for p in convs.values() if p.KW > 1)
    one = next(p for p in convs.values() if p.KW == 1 and p.KH == 1)
    assert (wide.KV, wide.PB) == (2, 4) and (one.KV, one.PB) == (2, 6)
    compile_and_check(graph, batch=2, march=avx2, kernels={"c": "direct", "p": "direct"})


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("filters", [20, 116])
def test_a_part_filled_last_vector_is_stored_through_transposes(filters, target):
    """A C×H×W output whose last filter vector is part filled (20 = 16 + 4 or 8 + 8 + 4; shufflenet_v2's 116)
    goes through the in-register transposes too: the planes past the last filter are skipped in that vector
    only. With a residual and an activation, in both transposes (shuffles and through memory)."""
    layers = [conv("c", filters, 1, ["x"]), conv("side", filters, 1, ["x"]),
              {"name": "sum", "op": "add", "inputs": ["c", "side"]}, {"name": "act", "op": "silu", "inputs": ["sum"]}]
    graph = compiler.load(model_dict(layers, shape=(24, 7, 9), name="tail", seed=4))
    plan = kernel_plan(graph, target, kernels={"c": "direct", "side": "direct"})[1]
    p = plan["act"].params
    assert p.TRANSPOSE_STORE and p.PARTIAL_LAST and p.residual and plan["act"].layouts == (0, 0, 0)
    assert all(len(sv.planes) == p.LASTN and len(sv.tail) == p.VL - p.LASTN for sv in p.store_vectors)
    for cflags in ([], ["-DCONVC_HAS_SHUFFLE=0"]):
        compile_and_check(graph, batch=2, march=target, kernels={"c": "direct", "side": "direct"}, cflags=cflags)


def test_avx2_register_blocks_by_filter_vectors():
    """AVX2 (16 registers), by the number of 8-filter vectors: 4 × 3 where they split into 4, else 3 × 4 where
    into 3, else 2 × 6 (2 × 4 under kernels wider than a column), else 1 × 12; AVX-512 2 × 12 or 1 × 16."""
    from compiler.kernels.common import block_shape
    assert [block_shape(kb, 16) for kb in (4, 8, 3, 6, 9, 2, 10, 5, 1)] == [
        (4, 3), (4, 3), (3, 4), (3, 4), (3, 4), (2, 6), (2, 6), (1, 12), (1, 12)]
    assert [block_shape(kb, 32) for kb in (2, 3, 6)] == [(2, 12), (1, 16), (2, 12)]


def one_column_geometry(oh: int, ow: int) -> dict:
    return dict(OH=oh, OW=ow, H=oh, W=ow, OHW=oh * ow, KW=1, CG=256, KHW=1, row_lo=(0,) * oh, row_hi=(1,) * oh,
                col_lo=(0,) * ow, col_hi=(1,) * ow)


def test_avx2_one_column_kernels_take_the_block_with_the_least_fma_time():
    """AVX2, kernels one column wide: of 2 × 6 and 3 × 4 (weights pinned in registers) the one with the least FMA
    time over the layer's rows, the last block's padding counted. A 1×1 at 56×56 (pixels re-cut into rows):
    2 × 6 unless the vectors split into threes (3 of 9) and 2 × 6 would pad; 7-pixel rows (a strided 1×1, not
    re-cut): 3 × 4 (6 + 1 pixels cost 2 × 6 a 1-pixel block); one vector: 1 × 12."""
    from compiler.kernels.direct import direct_block_shape
    wide = {kb: direct_block_shape(kb, 16, one_column_geometry(56, 56), True, False)[0]
            for kb in (1, 2, 3, 4, 5, 8, 9, 16, 32, 256)}
    assert wide == {1: (1, 12), 2: (2, 6), 3: (3, 4), 4: (2, 6), 5: (2, 6), 8: (2, 6), 9: (3, 4), 16: (2, 6),
                    32: (2, 6), 256: (2, 6)}
    narrow = {kb: direct_block_shape(kb, 16, one_column_geometry(7, 7), False, False)[0] for kb in (2, 8, 256)}
    assert narrow == {2: (2, 6), 8: (3, 4), 256: (3, 4)}


@pytest.mark.parametrize("filters, stride, block", [(128, 2, (2, 4)), (64, 2, (2, 4)), (24, 2, (3, 4)),
                                                    (128, 1, (4, 3))])
def test_avx2_strided_wide_kernels_take_two_by_four_blocks(filters, stride, block):
    """AVX2, 3×3 convs reading a blocked input: at stride 2, 2 × 4 blocks for an even number of filter vectors
    (16 or 8; 4 × 3 otherwise), 3 × 4 for three; at stride 1, 4 × 3. Against the interpreter; odd output sizes
    leave part-filled blocks at the row ends."""
    avx2 = TARGETS[0]
    layers = [conv("e", 32, 1, ["x"]), {"name": "er", "op": "relu", "inputs": ["e"]},
              conv("c", filters, 3, ["er"], stride=stride, padding=1), {"name": "r", "op": "relu", "inputs": ["c"]}]
    graph = compiler.load(model_dict(layers, shape=(32, 15, 21), name="strided", seed=4))
    forced = {"c": "direct", "e": "direct"}
    p = kernel_plan(graph, avx2, kernels=forced)[1]["r"].params
    assert (p.KV, p.PB, p.SW, p.XB) == (*block, stride, 8)
    compile_and_check(graph, batch=2, march=avx2, kernels=forced)


@pytest.mark.parametrize("case", ["unrolled", "chunked", "three-by-four", "chw-input", "avx512"])
def test_the_channel_loop_of_one_tap_kernels_is_unrolled_over_the_input_lanes(case):
    """AVX2, a 1×1 conv reading a channel-blocked input with a 2 × 6 block (a spare register) and its channels in
    one chunk: the loop over input channels is unrolled over the input's 8 lanes (#pragma GCC unroll 8); from a
    C×H×W input 4 times. Not when the channels are chunked (a small L1), the block fills the registers (3 × 4:
    24 filters), or on AVX-512. Each compiled against the interpreter."""
    avx2, avx512 = TARGETS
    filters = 24 if case == "three-by-four" else 32
    layers = [conv("c", filters, 1, ["x" if case == "chw-input" else "er"])]
    if case != "chw-input":
        layers = [conv("e", 64, 3, ["x"], padding=1), {"name": "er", "op": "relu", "inputs": ["e"]}] + layers
    graph = compiler.load(model_dict(layers, shape=(64, 10, 12), name="unroll", seed=3))
    target = {"avx512": avx512, "chunked": dataclasses.replace(avx2, l1d_bytes=4 * 1024)}.get(case, avx2)
    forced = {"c": "direct"}
    p = kernel_plan(graph, target, kernels=forced)[1]["c"].params
    assert (p.XB, p.CHUNKED) == (0 if case == "chw-input" else target.lanes, case == "chunked")
    unroll = {"unrolled": 8, "chw-input": 4}.get(case, 0)
    assert p.CHANNEL_UNROLL == unroll
    code = render(lowered(graph, target, kernels=forced)).code
    assert ("#pragma GCC unroll" in code) == bool(unroll) and (not unroll or f"#pragma GCC unroll {unroll}" in code)
    compile_and_check(graph, batch=2, march=target, kernels=forced)


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("filters, kernel", [(40, 1), (36, [7, 1]), (40, [7, 1])])
def test_a_padded_last_register_block_is_not_stored(filters, kernel, target):
    """40 filters (5 vectors) on AVX2: 3 × 4 blocks, the second holding one zero vector of padding whose sums
    are not stored; 36 = 4 × 8 + 4 adds a part-filled last vector. Into a channel-blocked output with a residual
    and into the model's C×H×W one, against the interpreter. AVX-512 (2 × 12 or 1 × 16 blocks) pins nothing."""
    layers = [conv("e", 16, 1, ["x"]), {"name": "er", "op": "relu", "inputs": ["e"]},
              conv("c", filters, kernel, ["er"], padding=[k // 2 for k in kernel] if isinstance(kernel, list) else 0),
              conv("side", filters, 1, ["er"]), {"name": "s", "op": "add", "inputs": ["c", "side"]},
              {"name": "sr", "op": "relu", "inputs": ["s"]}, conv("p", filters, 1, ["sr"])]
    graph = compiler.load(model_dict(layers, shape=(16, 11, 13), name="padded", seed=8))
    forced = {n: "direct" for n in ("e", "c", "side", "p")}
    plan = kernel_plan(graph, target, kernels=forced)[1]
    convs = [c.params for c in plan.choices.values() if c.kernel == "direct" and c.params.K == filters]
    assert any(not p.YB for p in convs) and (any(p.YB for p in convs) or filters % target.lanes)
    for p in convs:
        if target.vector_registers == 16:
            assert (p.KV, p.PB) == (3, 4) and p.PADDED and p.KB_PACKED == 6 and p.padding_vectors == (False, False, True)
            assert p.PIN_WEIGHTS
        else:
            assert not p.PIN_WEIGHTS
    compile_and_check(graph, batch=2, march=target, kernels=forced)


@pytest.mark.parametrize("kernel", [1, 3])
def test_avx2_three_filter_vectors_take_three_by_four_blocks(kernel):
    """24 filters on AVX2: 3 × 4 blocks (1 × 12 read 12 input values per weight vector), into a channel-blocked
    output and into the model's C×H×W one."""
    layers = [conv("c", 24, kernel, ["x"], padding=kernel // 2), {"name": "r", "op": "relu", "inputs": ["c"]},
              conv("p", 24, 3, ["r"], padding=1)]
    graph = compiler.load(model_dict(layers, shape=(16, 9, 14), name="three", seed=2))
    avx2 = TARGETS[0]
    forced = {"c": "direct", "p": "direct"}
    plan = kernel_plan(graph, avx2, kernels=forced)[1]
    assert all((c.params.KV, c.params.PB) == (3, 4) for c in plan.choices.values())
    assert plan["r"].layouts[-1] == 8 and plan["p"].layouts[-1] == 0
    compile_and_check(graph, batch=2, march=avx2, kernels=forced)


@pytest.mark.parametrize("channels, blocked_output, block", [(32, False, (2, 12)), (512, False, (4, 6)),
                                                            (32, True, (4, 6))])
def test_avx512_transposed_stores_of_small_layers_keep_two_by_twelve(channels, blocked_output, block):
    """AVX-512, 64 filters (4 vectors), 28-pixel rows, which 4 × 6 and 2 × 12 fill equally: 4 × 6 wins the tie
    (fewer loads per FMA), except for a C×H×W output of C·KH·KW < TRANSPOSED_WIDE_CKK, stored through one
    16 × 16 transpose per filter vector and block, whose code 4 × 6 doubles (DenseNet-121's C 4.2 -> 6.5 MB)."""
    layers = [conv("c", 64, 3, ["x"], padding=1)]
    if blocked_output:
        layers += [{"name": "r", "op": "relu", "inputs": ["c"]}, conv("p", 16, 1, ["r"])]
    graph = compiler.load(model_dict(layers, shape=(channels, 6, 28), name="tie", seed=6))
    forced = {"c": "direct", "p": "direct"} if blocked_output else {"c": "direct"}
    avx512 = TARGETS[1]
    plan = kernel_plan(graph, avx512, kernels=forced)[1]
    conv_choice = plan["r" if blocked_output else "c"]
    assert (conv_choice.params.KV, conv_choice.params.PB) == block
    assert bool(conv_choice.layouts[-1]) == blocked_output
    compile_and_check(graph, batch=2, march=avx512, kernels=forced)
