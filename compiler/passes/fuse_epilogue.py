"""fuse_epilogue: a conv2d/dense/batchnorm, then a residual add, then an activation -> one fused_conv2d/
fused_dense/fused_batchnorm (a batchnorm left by fold_batchnorm: one that reads no conv of its own).

The activation is relu, relu6, clip, leaky_relu, or one of ops.fused.FUSABLE (sigmoid, tanh, silu, hardswish,
hardsigmoid, gelu).

The kernel applies them to each output value before storing it, so the tensors between
them are never written to memory.
"""
from __future__ import annotations

import dataclasses

from ..ir import Graph, Layer
from ..ops.base import attrs_to_dict
from ..ops.fused import FUSABLE, FusedBatchNormAttrs, FusedConv2dAttrs, FusedDenseAttrs, has_activation
from .rewrite import merge_into, sole_consumer

FUSED = {"conv2d": ("fused_conv2d", FusedConv2dAttrs), "dense": ("fused_dense", FusedDenseAttrs),
         "batchnorm": ("fused_batchnorm", FusedBatchNormAttrs)}


def _as_fused(layer: Layer) -> Layer:
    if layer.op in FUSED:
        op, cls = FUSED[layer.op]
        fields = {f.name: getattr(layer.attrs, f.name) for f in dataclasses.fields(layer.attrs)}
        return dataclasses.replace(layer, op=op, attrs=cls(**fields))
    return layer


def _activation(layer: Layer) -> dict | None:
    """The epilogue fields an activation layer stands for, or None if it cannot be fused."""
    a = layer.attrs
    return {"relu": lambda: {"act_min": 0.0},
            "relu6": lambda: {"act_min": 0.0, "act_max": 6.0},
            "clip": lambda: {"act_min": a.min, "act_max": a.max},
            "leaky_relu": lambda: {"negative_slope": a.negative_slope}}.get(layer.op, lambda: _pointwise(layer))()


def _pointwise(layer: Layer) -> dict | None:
    """A FUSABLE op: the epilogue's activation and its attributes."""
    if layer.op not in FUSABLE:
        return None
    return {"activation": layer.op, "activation_attrs": tuple(attrs_to_dict(layer.attrs).items())}


def _is_residual_add(graph: Graph, add: Layer, source: str) -> bool:
    """add(source, other) with no broadcasting: the epilogue adds `other` element by element."""
    if add.op != "add" or len(add.inputs) != 2 or add.inputs.count(source) != 1:
        return False
    other = next(i for i in add.inputs if i != source)
    return graph.shape(other) == graph.shape(source) == graph.shape(add.name)


def fuse_epilogue(graph: Graph) -> Graph:
    """Fuse `add` (two inputs, one of them the conv/dense/batchnorm) and then one activation into each
    conv2d/dense/batchnorm."""
    for first in graph.layers():
        if first.op not in FUSED:
            continue
        layer = first
        user = sole_consumer(graph, layer.name)
        if user is not None and _is_residual_add(graph, graph.layer(user), layer.name):
            add = graph.layer(user)
            other = next(i for i in add.inputs if i != layer.name)
            fused = _as_fused(layer)
            merged = dataclasses.replace(fused, name=add.name, inputs=layer.inputs + (other,))
            graph = merge_into(graph, layer.name, merged, graph.layer_weights(layer.name))
            layer = merged
        user = sole_consumer(graph, layer.name)
        act = _activation(graph.layer(user)) if user is not None else None
        if act is not None:
            fused = _as_fused(layer)
            if has_activation(fused.attrs):
                continue
            merged = dataclasses.replace(fused, name=user, attrs=dataclasses.replace(fused.attrs, **act))
            graph = merge_into(graph, layer.name, merged, graph.layer_weights(layer.name))
    return graph
