"""fuse_channel_shuffle: ShuffleNet's channel shuffle as exported to ONNX (and as a native description writes it),
reshape C×H×W -> g×(C/g)×H×W, transpose swapping those two axes, reshape back to C×H×W -> one channel_shuffle
layer, a single copy instead of a transpose of the whole tensor.
"""
from __future__ import annotations

from ..ir import Graph, Layer
from ..ops.slicing import ChannelShuffleAttrs
from .rewrite import merge_into, sole_consumer


def _groups(graph: Graph, transpose: Layer) -> int | None:
    """g when `transpose` swaps the two leading per-sample axes of a g×(C/g)×... reshape of a C×... tensor."""
    split = graph.layer(transpose.inputs[0])
    if split.op != "reshape":
        return None
    shape, grouped = graph.shape(split.inputs[0]), graph.shape(split.name)
    if len(grouped) != len(shape) + 1 or grouped[0] * grouped[1] != shape[0] or grouped[2:] != shape[1:]:
        return None
    perm = transpose.spec.axes(transpose, grouped)
    return grouped[0] if perm == (1, 0, *range(2, len(grouped))) else None


def fuse_channel_shuffle(graph: Graph) -> Graph:
    """Replace reshape -> transpose -> reshape (the channel shuffle of g groups) by channel_shuffle(groups=g),
    named as the last reshape; the first reshape goes too when the transpose was its only reader."""
    for layer in graph.layers():
        if layer.op != "transpose" or layer.name not in graph.nx.nodes:
            continue
        groups = _groups(graph, layer)
        user = sole_consumer(graph, layer.name)
        if groups is None or user is None or graph.layer(user).op != "reshape":
            continue
        split = graph.layer(layer.inputs[0])
        source = split.inputs[0]
        if graph.shape(user) != graph.shape(source):
            continue
        back = graph.layer(user)
        shuffle = Layer(back.name, "channel_shuffle", ChannelShuffleAttrs(groups), (source,), back.source,
                        back.merged, back.batched)
        graph = merge_into(graph, layer.name, shuffle, {})
        if not graph.consumers(split.name) and split.name not in graph.outputs:
            graph = merge_into(graph, split.name, graph.layer(back.name), {})
    return graph
