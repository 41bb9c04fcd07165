"""The one graph edit the passes need: replace a chain of layers by one new layer."""
from __future__ import annotations

import dataclasses

import numpy as np

from ..ir import Graph, Layer


def fresh_name(graph: Graph, base: str) -> str:
    """`base`, or `base_1`, `base_2` ...: the first that names no layer of `graph`."""
    name, k = base, 1
    while name in graph.nx.nodes:
        name, k = f"{base}_{k}", k + 1
    return name


def sole_consumer(graph: Graph, name: str) -> str | None:
    """The one layer that reads `name` (once), if `name` is not a model output; else None."""
    if name in graph.outputs:
        return None
    users = graph.consumers(name)
    if len(users) != 1 or graph.layer(users[0]).inputs.count(name) != 1:
        return None
    return users[0]


def merge_into(graph: Graph, removed: str, kept: Layer, weights: dict[str, np.ndarray]) -> Graph:
    """A copy of `graph` without layer `removed`, with `kept` (an existing name) as the new layer there.

    `weights` are kept's new weights by suffix; removed's and kept's old weights are dropped. The new
    layer's `merged` lists the layers it now computes besides its own name (removed's, then removed).
    """
    g = graph.copy()
    shape = g.shape(kept.name)
    merged = graph.layer(removed).sources + graph.layer(kept.name).merged
    kept = dataclasses.replace(kept, merged=tuple(dict.fromkeys(m for m in merged if m != kept.name)))
    g.nx.remove_node(removed)
    g.nx.remove_node(kept.name)
    g.nx.add_node(kept.name, layer=kept, shape=shape)
    for src in kept.inputs:
        g.nx.add_edge(src, kept.name)
    for user in graph.consumers(kept.name):
        g.nx.add_edge(kept.name, user)
    for prefix in (f"{removed}.", f"{kept.name}."):
        for key in [k for k in g.weights if k.startswith(prefix)]:
            del g.weights[key]
    for suffix, value in weights.items():
        g.weights[f"{kept.name}.{suffix}"] = np.ascontiguousarray(value, dtype=np.float32)
    return g


def bypass(graph: Graph, name: str) -> Graph:
    """A copy of `graph` where the readers of one-input layer `name` read its input instead."""
    g = graph.copy()
    src = graph.layer(name).inputs[0]
    for user in graph.consumers(name):
        layer = graph.layer(user)
        g.nx.nodes[user]["layer"] = dataclasses.replace(
            layer, inputs=tuple(src if i == name else i for i in layer.inputs))
        g.nx.add_edge(src, user)
    g.nx.remove_node(name)
    for key in [k for k in g.weights if k.startswith(f"{name}.")]:
        del g.weights[key]
    return g


def replace_with(graph: Graph, kept: Layer, removed: list[str]) -> Graph:
    """A copy of `graph` without the layers `removed` (and their weights), where the existing layer `kept.name`
    becomes `kept`, reading kept.inputs. Its `merged` gains the removed layers that were not constants."""
    g = graph.copy()
    old = graph.layer(kept.name)
    computed = [n for n in removed if graph.layer(n).op != "constant"]
    order = {layer.name: i for i, layer in enumerate(graph.layers())}
    merged = sorted({s for n in computed for s in graph.layer(n).sources}, key=lambda n: order.get(n, -1))
    kept = dataclasses.replace(kept, merged=tuple(dict.fromkeys(merged + list(old.merged))))
    for name in removed:
        g.nx.remove_node(name)
        for key in [k for k in g.weights if k.startswith(f"{name}.")]:
            del g.weights[key]
    for src in list(g.nx.predecessors(kept.name)):
        g.nx.remove_edge(src, kept.name)
    g.nx.nodes[kept.name]["layer"] = kept
    for src in kept.inputs:
        g.nx.add_edge(src, kept.name)
    return g
