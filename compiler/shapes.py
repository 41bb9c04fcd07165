"""Shape inference: each layer's per-sample output shape by its op's rule, in topological order."""
from __future__ import annotations

import warnings
from typing import Callable

from .ir import Graph, Layer


def infer_shapes(graph: Graph, check: Callable[[Graph, Layer], None] | None = None) -> Graph:
    """Annotate every node with its output shape; errors show the formula with the numbers.

    Warnings (e.g. input rows a stride never reads) are raised as ConvcWarning and kept in graph.warnings.
    check(graph, layer) runs after each layer's shape, before its consumers' (size limits stop there).
    """
    graph.warnings.clear()
    for layer in graph.layers():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            shape = layer.spec.infer_shape(layer, [graph.shape(i) for i in layer.inputs])
        graph.nx.nodes[layer.name]["shape"] = tuple(int(d) for d in shape)
        if check is not None:
            check(graph, layer)
        for w in caught:
            graph.warnings.append(str(w.message))
            warnings.warn(w.message, stacklevel=2)
    return graph
