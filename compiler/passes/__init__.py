"""Graph optimization passes: each a small pure function Graph -> Graph, run in the listed order."""
from __future__ import annotations

from typing import Callable

from ..ir import Graph

Pass = Callable[[Graph], Graph]

# opt_level -> the passes it runs. Level 0 is the plain, literal lowering of every layer.
PIPELINES: dict[int, list[Pass]] = {
    0: [],
}


def optimize(graph: Graph, opt_level: int) -> Graph:
    if opt_level not in PIPELINES:
        raise ValueError(f"opt_level must be one of {sorted(PIPELINES)}, got {opt_level!r}")
    for run_pass in PIPELINES[opt_level]:
        graph = run_pass(graph)
    return graph
