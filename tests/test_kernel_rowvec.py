"""The rowvec kernel's register blocks (compiler/kernels/rowvec.py, register_block): with 16 registers (AVX2)
6 × 2 or 4 × 2 with the row vectors pinned in registers, whichever computes fewer padding filters for its
speed; 8 × 2 with 32 (AVX-512). Compared with the float64 interpreter on both targets."""
from __future__ import annotations

import pytest

import compiler
from compiler.kernels.rowvec import register_block
from conftest import TARGET_IDS, TARGETS, compile_and_check, kernel_plan, model_dict


def test_register_blocks_by_filters():
    avx2, avx512 = TARGETS
    assert {k: register_block(k, avx2) for k in (3, 8, 12, 16, 32, 64)} == {
        3: (4, 2), 8: (4, 2), 12: (6, 2), 16: (6, 2), 32: (6, 2), 64: (6, 2)}
    assert register_block(64, avx512) == (8, 2)


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("filters", [8, 32])
def test_stems_match_the_interpreter(filters, target):
    """A 7×7/2 stem with 3 input channels and a ReLU: 32 filters take 6 × 2 blocks on AVX2, the last block's 4
    filters past K computed and not stored; 8 take 4 × 2. 45 output columns leave a part-filled last vector."""
    layers = [{"name": "c", "op": "conv2d", "filters": filters, "kernel": 7, "stride": 2, "padding": 3, "inputs": ["x"]},
              {"name": "r", "op": "relu", "inputs": ["c"]}]
    graph = compiler.load(model_dict(layers, shape=(3, 30, 90), name="stem", seed=11))
    choice = kernel_plan(graph, target, kernels={"c": "rowvec"})[1]["r"]
    p = choice.params
    assert choice.kernel == "rowvec" and (p.MR, 2) == register_block(filters, target)
    assert bool(p.PIN_INPUT) == (target.vector_registers == 16)
    assert p.PARTIAL_LAST == (filters % p.MR != 0)
    compile_and_check(graph, batch=2, march=target, kernels={"c": "rowvec"})
