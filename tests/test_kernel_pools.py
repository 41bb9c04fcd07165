"""Pools on the thread pool: a pool of PARALLEL_READS reads or more splits its channels across threads
(compiler/kernels/split_pool.py, maxpool.py, global_pool.py). One sample on two threads, so the layer itself
is split (a batch would go one sample per thread), compared with the float64 interpreter on both targets."""
from __future__ import annotations

import pytest

import compiler
from compiler.kernels.common import PARALLEL_READS
from conftest import TARGET_IDS, TARGETS, compile_and_check, kernel_plan, model_dict

# name -> (input shape, layer, kernel expected, reads)
POOLS = {
    # SqueezeNet's 3×3/2 ceil-mode max pool: windows reach past the input
    "max-3x3-s2-ceil": ((64, 55, 55), {"op": "maxpool2d", "kernel": 3, "stride": 2, "ceil_mode": True},
                        "maxpool_padded", 64 * 27 * 27 * 9),
    "avg-3x3-s1-pad1": ((32, 40, 40), {"op": "avgpool2d", "kernel": 3, "stride": 1, "padding": 1},
                        "avgpool_interior", 32 * 40 * 40 * 9),
    "max-2x2-s2": ((128, 64, 64), {"op": "maxpool2d", "kernel": 2, "stride": 2}, "maxpool_interior",
                   128 * 32 * 32 * 4),
    "global-avg": ((64, 80, 80), {"op": "global_avgpool"}, "global_pool", 64 * 80 * 80),
}


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("name", sorted(POOLS))
def test_large_pools_split_their_channels_across_threads(name, target):
    shape, layer, kernel, reads = POOLS[name]
    assert PARALLEL_READS <= reads < 1 << 20  # below the conv's threshold: parallel only as a pool
    graph = compiler.load(model_dict([dict(layer, name="p", inputs=["x"])], shape=shape, name="pool", seed=8))
    choice = kernel_plan(graph, target)[1]["p"]
    assert choice.kernel == kernel and choice.params.parallel
    compile_and_check(graph, batch=1, march=target, threads=2)
