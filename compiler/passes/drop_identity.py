"""drop_identity: dropout is the identity at inference; its readers read its input directly."""
from __future__ import annotations

from ..ir import Graph
from .rewrite import bypass


def drop_identity(graph: Graph) -> Graph:
    """Remove every dropout layer that is not a model output (an output keeps its name)."""
    for layer in graph.layers():
        if layer.op == "dropout" and layer.name not in graph.outputs:
            graph = bypass(graph, layer.name)
    return graph
