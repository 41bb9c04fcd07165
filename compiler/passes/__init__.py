"""Graph optimization passes: each a small pure function Graph -> Graph, run in the listed order.

Level 0 is the plain, literal lowering of every layer. Level 1 runs the graph passes and
keeps the plain kernels; level 2 runs the same passes, then the rewrites only the fast kernels gain from
(KERNEL_PASSES), and lowers convs, pools and dense layers to the fast kernels (select_kernels chooses them,
compiler/kernels/), so a bug can be isolated by level.
"""
from __future__ import annotations

from typing import Callable

from ..ir import Graph
from .drop_identity import drop_identity
from .fold_batchnorm import fold_batchnorm
from .fold_channel_last_chain import fold_channel_last_chain
from .fold_channel_scale import fold_channel_scale
from .fold_transposed_layernorm import fold_transposed_layernorm
from .fuse_channel_shuffle import fuse_channel_shuffle
from .fuse_epilogue import fuse_epilogue
from .recognize_activations import recognize_activations
from .reduce_to_global_pool import reduce_to_global_pool
from .subsample_strided_pointwise import subsample_strided_pointwise

Pass = Callable[[Graph], Graph]

GRAPH_PASSES: list[Pass] = [drop_identity, recognize_activations, fold_transposed_layernorm, fold_channel_last_chain,
                            fold_batchnorm, fold_channel_scale, fuse_epilogue, reduce_to_global_pool,
                            fuse_channel_shuffle]

# Rewrites for the fast kernels of level 2.
KERNEL_PASSES: list[Pass] = [subsample_strided_pointwise]

# opt_level -> the passes it runs.
PIPELINES: dict[int, list[Pass]] = {
    0: [],
    1: GRAPH_PASSES,
    2: GRAPH_PASSES + KERNEL_PASSES,
}


def optimize(graph: Graph, opt_level: int) -> Graph:
    if opt_level not in PIPELINES:
        raise ValueError(f"opt_level must be one of {sorted(PIPELINES)}, got {opt_level!r}")
    for run_pass in PIPELINES[opt_level]:
        graph = run_pass(graph)
    return graph
