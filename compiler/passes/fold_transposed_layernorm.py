"""fold_transposed_layernorm: transpose -> layernorm -> the inverse transpose -> one layernorm, no transposes.

ConvNeXt's LayerNorm2d (torchvision) permutes N×C×H×W to N×H×W×C, normalizes the last axis and permutes back;
both ONNX exporters write it as Transpose -> LayerNormalization -> Transpose. Normalizing axes a..b of the
permuted tensor is normalizing axes perm[a..b] of the original, so when those are consecutive and in order the
three layers are one layernorm over them (axis 1 to 1: each pixel over its channels) with the same weights.

This is a graph pass rather than a rule of the ONNX front end so that it applies to every source of the
pattern (a native description written as PyTorch's code reads, `convc convert` output, both exporters), keeps
the import one ONNX node to one layer, and leaves opt level 0 the literal graph.
"""
from __future__ import annotations

import dataclasses

from ..ir import Graph
from ..ops.base import batch_offset
from .rewrite import merge_into, sole_consumer


def fold_transposed_layernorm(graph: Graph) -> Graph:
    """Replace each transpose -> layernorm -> inverse transpose chain (each read only by the next) by one layernorm
    over the original axes, named as the last transpose."""
    for name in [layer.name for layer in graph.layers()]:
        # The current layer of that name: an earlier fold may have removed it or given its name to a layernorm.
        first = graph.layer(name) if name in graph.nx else None
        if first is None or first.op != "transpose":
            continue
        norm_name = sole_consumer(graph, first.name)
        if norm_name is None or graph.layer(norm_name).op != "layernorm":
            continue
        back_name = sole_consumer(graph, norm_name)
        if back_name is None or graph.layer(back_name).op != "transpose":
            continue
        norm, back = graph.layer(norm_name), graph.layer(back_name)
        perm = first.spec.axes(first, graph.shape(first.inputs[0]))
        inverse = back.spec.axes(back, graph.shape(norm_name))
        if [perm[k] for k in inverse] != list(range(len(perm))):
            continue
        a, b = norm.spec.axes(norm, graph.shape(first.name))
        original = [perm[k] for k in range(a, b + 1)]
        if original != list(range(original[0], original[-1] + 1)):
            continue  # the normalized axes are not consecutive in order in the original tensor
        offset = batch_offset(norm)
        attrs = dataclasses.replace(norm.attrs, axis=original[0] + offset, last_axis=original[-1] + offset)
        weights = graph.layer_weights(norm_name)
        # Two merges: the layernorm takes over the first transpose's input, then the last transpose's name.
        graph = merge_into(graph, first.name, dataclasses.replace(norm, inputs=first.inputs, attrs=attrs), weights)
        merged = dataclasses.replace(graph.layer(norm_name), name=back_name)
        graph = merge_into(graph, norm_name, merged, weights)
    return graph
