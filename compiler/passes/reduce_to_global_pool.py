"""reduce_to_global_pool: the mean or max over H×W of a C×H×W tensor (`x.mean([2, 3])`, ONNX ReduceMean over
axes [2, 3]) -> global_avgpool / global_maxpool, whose kernel reads the channel-blocked tensors of the fast
convolutions at opt level 2; without keepdims a flatten (a view) drops the two size-1 axes.
"""
from __future__ import annotations

import dataclasses

from ..ir import Graph, Layer
from ..ops.base import NoAttrs
from .rewrite import fresh_name

POOLS = {"reduce_mean": "global_avgpool", "reduce_max": "global_maxpool"}


def _is_spatial(graph: Graph, layer: Layer) -> bool:
    shape = graph.in_shapes(layer.name)[0]
    return len(shape) == 3 and layer.spec.reduced(layer, shape) == [1, 2]


def reduce_to_global_pool(graph: Graph) -> Graph:
    """Replace every reduce_mean / reduce_max over exactly H and W of a C×H×W input by the global pool (and a
    flatten after it when keepdims is false); the layer's readers keep its name."""
    for layer in graph.layers():
        if layer.op not in POOLS or not _is_spatial(graph, layer):
            continue
        graph = graph.copy()
        pool = dataclasses.replace(layer, op=POOLS[layer.op], attrs=NoAttrs())
        if layer.attrs.keepdims:
            graph.replace_layer(pool)
            continue
        c = graph.in_shapes(layer.name)[0][0]
        name = fresh_name(graph, f"{layer.name}_pool")
        graph.nx.add_node(name, layer=dataclasses.replace(pool, name=name), shape=(c, 1, 1))
        graph.nx.add_edge(pool.inputs[0], name)
        graph.nx.remove_edge(pool.inputs[0], layer.name)
        graph.nx.add_edge(name, layer.name)
        graph.replace_layer(dataclasses.replace(layer, op="flatten", attrs=NoAttrs(), inputs=(name,)))
    return graph
