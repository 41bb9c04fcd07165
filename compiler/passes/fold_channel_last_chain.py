"""fold_channel_last_chain: N×C×H×W -> N×H×W×C, ops on the last axis, and back -> the same ops on the channels.

ConvNeXt's block (torchvision) permutes to channels-last, normalizes each pixel (LayerNorm), applies two
nn.Linear layers with a GELU between them, and permutes back; the exporters write the linear layers as MatMul
by a constant K×P matrix plus Add of a constant P vector. On channels-last pixels, that product is a 1×1
convolution of the channels-first tensor:

    y[h, w, p] = Σ_k x[h, w, k]·B[k, p] + b[p]   <=>   conv1x1(x) with weight[p, k, 0, 0] = B[k, p], bias b

so the chain becomes layernorm over the channels, conv2d 1×1 (+ bias), element-wise ops as they are, conv2d 1×1,
with no transposes: the fast pointwise kernels and fused epilogues then apply, and no tensor is transposed twice.

A chain qualifies only when it ends in the inverse transpose and every layer in it is read only by the next, so
nothing outside sees the channels-last tensors. Allowed in it: layernorm over the last axis, matmul by a
constant K×P matrix (an add of a constant P vector right after it becomes its bias), element-wise one-input
ops (activations, unary math), and add/sub/mul/div with a one-element constant.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..ir import Graph, Layer
from ..ops.activations import _Pointwise
from ..ops.spatial import Conv2dAttrs
from ..shapes import output_shape
from .rewrite import sole_consumer

TO_CHANNELS_LAST = (0, 2, 3, 1)
TO_CHANNELS_FIRST = (0, 3, 1, 2)
SCALAR_OPS = ("add", "sub", "mul", "div")


def _constant(graph: Graph, name: str) -> np.ndarray | None:
    layer = graph.layer(name)
    return graph.weights[f"{name}.value"] if layer.op == "constant" else None


def _other_operand(layer: Layer, prev: str) -> str | None:
    """The input of a two-input layer that is not `prev`, if `prev` is read once."""
    if len(layer.inputs) != 2 or layer.inputs.count(prev) != 1:
        return None
    return layer.inputs[1] if layer.inputs[0] == prev else layer.inputs[0]


def _chain(graph: Graph, first: Layer) -> tuple[list[tuple[str, Layer]], str] | None:
    """The chain after transpose `first` as (role, layer) pairs, and the name of its closing transpose; None when
    the layers after `first` are not such a chain."""
    chain: list[tuple[str, Layer]] = []
    prev = first.name
    while True:
        name = sole_consumer(graph, prev)
        if name is None:
            return None
        layer = graph.layer(name)
        shape = graph.shape(prev)  # H×W×K
        if layer.op == "transpose":
            if layer.attrs.perm != TO_CHANNELS_FIRST or not chain or name in graph.outputs:
                return None
            return chain, name
        if layer.op == "layernorm" and layer.spec.axes(layer, shape) == (2, 2):
            chain.append(("layernorm", layer))
        elif layer.op == "matmul" and layer.inputs[0] == prev and layer.inputs[1] != prev:
            b = _constant(graph, layer.inputs[1])
            if b is None or b.ndim != 2 or b.shape[0] != shape[-1]:
                return None
            chain.append(("matmul", layer))
        elif layer.op in SCALAR_OPS and (other := _other_operand(layer, prev)) is not None:
            value = _constant(graph, other)
            if value is None:
                return None
            if value.size == 1:
                chain.append(("scalar", layer))
            elif (layer.op == "add" and value.shape == (shape[-1],) and chain and chain[-1][0] == "matmul"):
                chain.append(("bias", layer))
            else:
                return None
        elif isinstance(layer.spec, _Pointwise) and len(layer.inputs) == 1:
            chain.append(("pointwise", layer))
        else:
            return None
        prev = name


def _place(g: Graph, layer: Layer) -> None:
    """Put `layer` in `g` under its name, reading exactly its inputs, with its shape from theirs."""
    if layer.name in g.nx:
        for src in list(g.nx.predecessors(layer.name)):
            g.nx.remove_edge(src, layer.name)
        g.nx.nodes[layer.name]["layer"] = layer
    else:
        g.nx.add_node(layer.name, layer=layer)
    for src in layer.inputs:
        g.nx.add_edge(src, layer.name)
    g.nx.nodes[layer.name]["shape"] = output_shape(layer, [g.shape(i) for i in layer.inputs])


def _remove(g: Graph, name: str) -> None:
    g.nx.remove_node(name)
    for key in [k for k in g.weights if k.startswith(f"{name}.")]:
        del g.weights[key]


def _rewrite(graph: Graph, first: Layer, chain: list[tuple[str, Layer]], back: str) -> Graph:
    g = graph.copy()
    prev, prev_old = first.inputs[0], first.name  # the tensor the next layer reads now, and its name before
    readers: list[str] = []  # constants the chain read, removed below when nothing else reads them
    for i, (role, layer) in enumerate(chain):
        if role == "layernorm":
            offset = 1 if layer.batched else 0
            new = dataclasses.replace(layer, inputs=(prev,), attrs=dataclasses.replace(
                layer.attrs, axis=offset, last_axis=offset))
        elif role == "matmul":
            b = g.weights[f"{layer.inputs[1]}.value"]
            readers.append(layer.inputs[1])
            has_bias = i + 1 < len(chain) and chain[i + 1][0] == "bias"
            attrs = Conv2dAttrs(filters=b.shape[1], kernel=(1, 1), stride=(1, 1), padding=(0, 0, 0, 0),
                                dilation=(1, 1), groups=1, bias=has_bias)
            new = dataclasses.replace(layer, op="conv2d", attrs=attrs, inputs=(prev,))
            g.weights[f"{layer.name}.weight"] = np.ascontiguousarray(b.T[:, :, None, None], dtype=np.float32)
        elif role == "bias":
            conv = g.layer(prev)
            other = _other_operand(layer, prev_old)
            readers.append(other)
            merged = tuple(dict.fromkeys(conv.sources + layer.merged))
            new = dataclasses.replace(conv, name=layer.name, merged=merged)
            g.weights[f"{layer.name}.weight"] = g.weights.pop(f"{conv.name}.weight")
            g.weights[f"{layer.name}.bias"] = np.ascontiguousarray(g.weights[f"{other}.value"], dtype=np.float32)
            _remove(g, conv.name)
        else:  # pointwise or scalar: element by element, in any layout
            new = dataclasses.replace(layer, inputs=tuple(prev if x == prev_old else x for x in layer.inputs))
        _place(g, new)
        prev, prev_old = new.name, layer.name
    for user in graph.consumers(back):
        layer = g.layer(user)
        _place(g, dataclasses.replace(layer, inputs=tuple(prev if x == back else x for x in layer.inputs)))
    for name in (first.name, back):
        _remove(g, name)
    for name in dict.fromkeys(readers):
        if name in g.nx and g.nx.out_degree(name) == 0 and name not in g.outputs:
            _remove(g, name)
    return g


def fold_channel_last_chain(graph: Graph) -> Graph:
    """Replace each channels-last chain (transpose [0, 2, 3, 1] ... transpose [0, 3, 1, 2]) of a model that
    computes each sample on its own by the same computation on the channels-first tensor."""
    if not graph.batched:
        return graph
    for name in [layer.name for layer in graph.layers()]:
        first = graph.layer(name) if name in graph.nx else None
        if first is None or first.op != "transpose" or first.attrs.perm != TO_CHANNELS_LAST:
            continue
        found = _chain(graph, first)
        if found is not None:
            graph = _rewrite(graph, first, *found)
    return graph
