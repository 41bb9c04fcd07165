"""drop_identity: dropout (at inference) and identity copy nothing; their readers read their input directly."""
from __future__ import annotations

from ..ir import Graph
from .rewrite import bypass


def drop_identity(graph: Graph) -> Graph:
    """Remove every dropout and identity layer that is not a model output (an output keeps its name)."""
    for layer in graph.layers():
        if layer.op in ("dropout", "identity") and layer.name not in graph.outputs:
            graph = bypass(graph, layer.name)
    return graph
