"""fold_batchnorm: conv2d/dense followed by batchnorm -> one layer with scaled weights and shifted bias.

    bn(W·x + b) = (W·x + b)·s + t = (s·W)·x + (s·b + t),  s = γ/√(var + eps), t = β − mean·s
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..ir import Graph
from .rewrite import merge_into, sole_consumer

FOLDABLE = ("conv2d", "dense")


def fold_batchnorm(graph: Graph) -> Graph:
    """Fold each batchnorm into the conv2d/dense it alone reads; the merged layer takes the batchnorm's name."""
    for layer in graph.layers():
        if layer.op not in FOLDABLE:
            continue
        user = sole_consumer(graph, layer.name)
        if user is None or graph.layer(user).op != "batchnorm":
            continue
        bn = graph.layer(user)
        scale, shift = bn.spec.scale_shift(bn, graph.layer_weights(bn.name))
        w = graph.layer_weights(layer.name)
        weight = w["weight"].astype(np.float64)
        weight = weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
        bias = w["bias"].astype(np.float64) if "bias" in w else np.zeros_like(scale)
        attrs = dataclasses.replace(layer.attrs, bias=True)
        merged = dataclasses.replace(layer, name=bn.name, attrs=attrs)
        graph = merge_into(graph, layer.name, merged, {"weight": weight, "bias": bias * scale + shift})
    return graph
