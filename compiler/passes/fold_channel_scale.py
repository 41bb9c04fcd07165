"""fold_channel_scale: conv2d followed by a multiply by a constant per-channel scale -> one conv2d.

    s·(W·x + b) = (s·W)·x + s·b,  s a constant of shape K×1×1 (one factor per output channel) or one number

ConvNeXt's layer scale (`layer_scale * block(x)`, a K×1×1 parameter) is such a multiply; folding it lets the
residual add that follows fuse into the conv's epilogue.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..ir import Graph
from .rewrite import merge_into, sole_consumer


def _channel_scale(graph: Graph, mul: str, conv: str) -> np.ndarray | None:
    """The per-output-channel factors of mul(conv, constant), or None if the constant is not one."""
    layer = graph.layer(mul)
    if layer.op != "mul" or len(layer.inputs) != 2 or layer.inputs.count(conv) != 1:
        return None
    other = layer.inputs[1] if layer.inputs[0] == conv else layer.inputs[0]
    if graph.layer(other).op != "constant" or graph.shape(mul) != graph.shape(conv):
        return None
    value = graph.weights[f"{other}.value"]
    channels = graph.shape(conv)[0]
    if value.size == 1:
        return np.full(channels, float(value.reshape(())), dtype=np.float64)
    if len(graph.shape(conv)) == 3 and value.ndim == 3 and value.shape == (channels, 1, 1):
        return value.reshape(channels).astype(np.float64)
    return None


def fold_channel_scale(graph: Graph) -> Graph:
    """Fold each constant per-channel multiply into the conv2d it alone reads; the merged layer takes the mul's
    name, and the constant goes when nothing else reads it."""
    for layer in graph.layers():
        if layer.op != "conv2d" or layer.name not in graph.nx:
            continue
        user = sole_consumer(graph, layer.name)
        scale = _channel_scale(graph, user, layer.name) if user is not None else None
        if scale is None:
            continue
        mul = graph.layer(user)
        constant = mul.inputs[1] if mul.inputs[0] == layer.name else mul.inputs[0]
        w = graph.layer_weights(layer.name)
        weight = w["weight"].astype(np.float64) * scale.reshape(-1, 1, 1, 1)
        bias = w["bias"].astype(np.float64) * scale if "bias" in w else None
        merged = dataclasses.replace(layer, name=mul.name, inputs=layer.inputs,
                                     attrs=dataclasses.replace(layer.attrs, bias=bias is not None))
        graph = merge_into(graph, layer.name, merged, {"weight": weight} | ({"bias": bias} if bias is not None else {}))
        if graph.nx.out_degree(constant) == 0 and constant not in graph.outputs:
            graph = graph.copy()
            graph.nx.remove_node(constant)
            graph.weights.pop(f"{constant}.value", None)
    return graph
