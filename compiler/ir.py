"""The intermediate representation: a `Graph` of `Layer`s over a networkx.DiGraph.

Nodes are layer names carrying the frozen `Layer` (and, after shape inference, its
per-sample output shape); an edge u -> v means v reads u's output tensor. A layer's
`inputs` tuple gives the order of its operands (the edges alone cannot: add(a, a)).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np

from .ops import get_op
from .ops.base import Op, Shape


@dataclass(frozen=True)
class Layer:
    name: str
    op: str
    attrs: Any
    inputs: tuple[str, ...] = ()
    source: str = "<memory>"  # the file it came from, for error messages
    # The layers an optimization pass merged into this one, in model order (conv1, bn1 for the layer named
    # relu_2 that computes conv1 + bn1 + relu_2); it keeps the last one's name, which its readers use.
    merged: tuple[str, ...] = ()
    # True: the model computes each sample on its own, and its shapes leave out the batch axis (axis 0 of
    # every tensor, which attributes still count, as PyTorch does).
    batched: bool = True

    @property
    def where(self) -> str:
        merged = f": {' + '.join(self.sources)}" if self.merged else ""
        return f"{self.source}: layer '{self.name}' ({self.op}{merged})"

    @property
    def primary(self) -> str:
        """The layer it was before any merge: conv1 for conv1 + bn1 + relu_2."""
        return self.merged[0] if self.merged else self.name

    @property
    def sources(self) -> tuple[str, ...]:
        """Every model layer it computes, in order."""
        return self.merged + (self.name,)

    @property
    def spec(self) -> Op:
        return get_op(self.op)


@dataclass
class Graph:
    """A CNN: layers in a DAG, its input and output names, and its weights ("layer.suffix" -> array)."""
    name: str
    nx: nx.DiGraph
    inputs: list[str]
    outputs: list[str]
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = "<memory>"
    warnings: list[str] = field(default_factory=list)

    # -- access
    def layer(self, name: str) -> Layer:
        return self.nx.nodes[name]["layer"]

    def shape(self, name: str) -> Shape:
        """The tensor's shape: per sample in a batched model (the batch axis left out), else the whole tensor's."""
        return self.nx.nodes[name]["shape"]

    @property
    def batched(self) -> bool:
        """True: the model computes each sample on its own, for any batch size N given at call time, and its
        shapes leave out the batch axis. False: it computes whole tensors of fixed shapes (its ops may act
        across the leading axis), and its shapes are the whole tensors'."""
        return self.layer(self.inputs[0]).batched if self.inputs else True

    def runs_per_sample(self, name: str) -> bool:
        """A per-sample op (conv, pool, dense, ...) in a whole-tensor model: it runs on each index of the
        leading axis, and sees the shapes without it."""
        layer = self.layer(name)
        return layer.spec.per_sample and not layer.batched

    def repeats(self, name: str) -> int:
        """How many times the layer's op runs per call: the size of the leading axis when runs_per_sample."""
        return self.shape(name)[0] if self.runs_per_sample(name) else 1

    def in_shapes(self, name: str) -> list[Shape]:
        """The layer's input shapes as its op sees them (without the leading axis when runs_per_sample)."""
        skip = 1 if self.runs_per_sample(name) else 0
        return [self.shape(i)[skip:] for i in self.layer(name).inputs]

    def out_shape(self, name: str) -> Shape:
        """The layer's output shape as its op sees it (without the leading axis when runs_per_sample)."""
        return self.shape(name)[1:] if self.runs_per_sample(name) else self.shape(name)

    def layers(self) -> list[Layer]:
        """Layers in a deterministic topological order (inputs first)."""
        order = {n: i for i, n in enumerate(self.nx.nodes)}
        return [self.layer(n) for n in nx.lexicographical_topological_sort(self.nx, key=order.__getitem__)]

    def layer_weights(self, name: str) -> dict[str, np.ndarray]:
        layer = self.layer(name)
        suffixes = set(layer.spec.weight_shapes(layer, self.in_shapes(name))) | layer.spec.optional_weights(layer)
        # sorted: a set's order changes with the process's hash seed, and so would the C and its cache key
        return {s: self.weights[f"{name}.{s}"] for s in sorted(suffixes) if f"{name}.{s}" in self.weights}

    def consumers(self, name: str) -> list[str]:
        return list(self.nx.successors(name))

    # -- building (used by front ends and passes)
    @classmethod
    def from_layers(cls, name: str, layers: list[Layer], outputs: list[str] | None = None,
                    weights: dict[str, np.ndarray] | None = None, source: str = "<memory>") -> "Graph":
        """The layers must agree on `batched` (the front end sets it on every layer)."""
        g = nx.DiGraph()
        for layer in layers:
            g.add_node(layer.name, layer=layer)
        for layer in layers:
            for src in layer.inputs:
                g.add_edge(src, layer.name)
        inputs = [layer.name for layer in layers if layer.op == "input"]
        if outputs is None:
            outputs = [layer.name for layer in layers if g.out_degree(layer.name) == 0]
        return cls(name, g, inputs, list(outputs), dict(weights or {}), source)

    def copy(self) -> "Graph":
        return Graph(self.name, self.nx.copy(), list(self.inputs), list(self.outputs), dict(self.weights),
                     self.source, list(self.warnings))

    def replace_layer(self, layer: Layer) -> None:
        self.nx.nodes[layer.name]["layer"] = layer

    # -- reporting
    def summary(self) -> "Summary":
        from .summary import summarize
        return summarize(self)

    def __repr__(self) -> str:
        return f"<Graph {self.name!r}: {self.nx.number_of_nodes()} layers from {self.source}>"

