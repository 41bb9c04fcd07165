"""Shape inference: each layer's per-sample output shape by its op's rule, in topological order."""
from __future__ import annotations

import warnings
from typing import Callable

from .errors import ShapeError
from .ir import Graph, Layer
from .ops.base import Shape, fmt_shape


def infer_shapes(graph: Graph, check: Callable[[Graph, Layer], None] | None = None) -> Graph:
    """Annotate every node with its output shape; errors show the formula with the numbers.

    Warnings (e.g. input rows a stride never reads) are raised as ConvcWarning and kept in graph.warnings.
    check(graph, layer) runs after each layer's shape, before its consumers' (size limits stop there).
    """
    graph.warnings.clear()
    for layer in graph.layers():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            shape = output_shape(layer, [graph.shape(i) for i in layer.inputs])
        graph.nx.nodes[layer.name]["shape"] = shape
        if check is not None:
            check(graph, layer)
        for w in caught:
            graph.warnings.append(str(w.message))
            warnings.warn(w.message, stacklevel=2)
    return graph


def output_shape(layer: Layer, in_shapes: list[Shape]) -> Shape:
    """The layer's output shape from its inputs' (the graph's shapes: per sample in a batched model, whole
    tensors else). A per-sample op in a whole-tensor model runs over the leading axis its inputs share."""
    if layer.spec.per_sample and not layer.batched:
        lead = {s[0] for s in in_shapes if s}
        if len(lead) != 1:
            shapes = ", ".join(f"'{i}' {fmt_shape(s)}" for i, s in zip(layer.inputs, in_shapes))
            raise ShapeError(f"{layer.where}: runs on each sample (the leading axis) of its inputs, but they disagree "
                             f"on it: {shapes}")
        shape = (lead.pop(), *layer.spec.infer_shape(layer, [s[1:] for s in in_shapes]))
    else:
        shape = layer.spec.infer_shape(layer, in_shapes)
    return tuple(int(d) for d in shape)
