"""subsample_strided_pointwise: a 1×1 conv with stride S and no padding reads only every S-th pixel of every
S-th row, so it is a subsample (a 1×1 average pool with stride S: each window one pixel, copied, NaN
included; 0.0 + v turns only a -0.0 into +0.0) then the same conv at stride 1. The fast kernels run the
stride-1 conv as a pointwise one: its pixels are contiguous, so they can be re-cut into rows that fit the
register blocks (compiler/kernels/direct.py, pixel_rows), and each input vector it loads is a whole one where
the strided conv used every other one of each cache line.

Level 2 only: the plain kernels of level 1 gain nothing from it. Grouped convs keep their stride (the grouped
kernel does not re-cut rows; not measured). Measured on an AVX2-only Zen 3 (8-lane vectors, half a
cache line), per layer in alternating rounds, the subsample's time counted: ResNet-50's downsampling 1×1 convs
at stride 2, 1 thread, 0.88 (256 -> 512 from 56×56), 0.74 (512 -> 1024 from 28×28), 0.73 (1024 -> 2048 from
14×14); 2 threads 0.99, 0.78, 0.79 (the subsample runs on one thread); ResNeXt-50 alike; RegNet's smaller ones
(and from a C×H×W input) no change. Not measured on AVX-512 (a 16-lane vector is a whole cache line).
"""
from __future__ import annotations

import dataclasses

from ..ir import Graph
from ..ops.spatial import AvgPoolAttrs
from .rewrite import fresh_name

CONVS = ("conv2d", "fused_conv2d")


def _is_strided_pointwise(graph: Graph, name: str) -> bool:
    layer = graph.layer(name)
    if (layer.op not in CONVS or layer.attrs.groups != 1 or tuple(layer.attrs.kernel) != (1, 1)
            or tuple(layer.attrs.stride) == (1, 1)):
        return False
    axes = layer.spec.axes(layer, graph.in_shapes(name)[0])
    return all(ax.pad_lo == 0 and ax.pad_hi == 0 for ax in axes)


def subsample_strided_pointwise(graph: Graph) -> Graph:
    """Put a subsample (avgpool2d, kernel 1, the conv's stride) before every unpadded strided 1×1 conv of one
    group, which then runs at stride 1 on it."""
    for layer in graph.layers():
        if not _is_strided_pointwise(graph, layer.name):
            continue
        graph = graph.copy()
        source = layer.inputs[0]
        name = fresh_name(graph, f"{layer.name}_subsample")
        pool = dataclasses.replace(layer, name=name, op="avgpool2d", inputs=(source,), merged=(),
                                   attrs=AvgPoolAttrs(kernel=(1, 1), stride=tuple(layer.attrs.stride)))
        graph.nx.add_node(name, layer=pool, shape=pool.spec.infer_shape(pool, [graph.shape(source)]))
        graph.nx.add_edge(source, name)
        if layer.inputs.count(source) == 1:
            graph.nx.remove_edge(source, layer.name)
        graph.nx.add_edge(name, layer.name)
        attrs = dataclasses.replace(layer.attrs, stride=(1, 1), padding=(0, 0, 0, 0))
        graph.replace_layer(dataclasses.replace(layer, inputs=(name,) + layer.inputs[1:], attrs=attrs))
    return graph
