"""Whole-graph checks: references, cycles, and weights against the shapes the layers need."""
from __future__ import annotations

import networkx as nx
import numpy as np

from .errors import ModelError
from .ir import Graph


def validate_structure(graph: Graph) -> None:
    """Every input reference names a layer, and the layers form a DAG."""
    for name in graph.nx.nodes:
        layer = graph.layer(name)
        for src in layer.inputs:
            if "layer" not in graph.nx.nodes[src]:
                raise ModelError(f"{layer.where}: input {src!r} is not a layer or the model input")
    try:
        cycle = nx.find_cycle(graph.nx)
    except nx.NetworkXNoCycle:
        pass
    else:
        path = " -> ".join([u for u, _ in cycle] + [cycle[0][0]])
        raise ModelError(f"{graph.source}: the layers form a cycle: {path}")
    if not graph.inputs:  # several are fine (ONNX models may have them); each carries the batch
        raise ModelError(f"{graph.source}: the model has no input")


def init_weights(graph: Graph, seed: int) -> None:
    """Deterministic weights from `seed` for every layer, in layer order (needs shapes)."""
    rng = np.random.default_rng(seed)
    for layer in graph.layers():
        for suffix, value in layer.spec.init_weights(layer, graph.in_shapes(layer.name), rng).items():
            graph.weights[f"{layer.name}.{suffix}"] = np.ascontiguousarray(value, dtype=np.float32)


def validate_weights(graph: Graph) -> None:
    """Each layer's weights are present with PyTorch's shapes; nothing else is in the file.

    Arrays are converted to contiguous float32 in place.
    """
    expected: dict[str, tuple] = {}
    optional: set[str] = set()
    for layer in graph.layers():
        for suffix, shape in layer.spec.weight_shapes(layer, graph.in_shapes(layer.name)).items():
            expected[f"{layer.name}.{suffix}"] = (layer, tuple(shape))
        optional |= {f"{layer.name}.{s}" for s in layer.spec.optional_weights(layer)}
    for key, (layer, shape) in expected.items():
        if key not in graph.weights:
            raise ModelError(f"{layer.where}: weight '{key}' with shape {list(shape)} is missing from the weights")
        arr = np.asarray(graph.weights[key])
        if tuple(arr.shape) != shape:
            raise ModelError(f"{layer.where}: weight '{key}' has shape {list(arr.shape)}, expected {list(shape)}")
        if arr.dtype.kind not in "fiu":
            raise ModelError(f"{layer.where}: weight '{key}' has dtype {arr.dtype}, expected float32")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if not np.all(np.isfinite(arr)):
            raise ModelError(f"{layer.where}: weight '{key}' contains NaN or infinity")
        graph.weights[key] = arr
    extra = sorted(set(graph.weights) - set(expected) - optional)
    if extra:
        shown = ", ".join(map(repr, extra[:10])) + (" ..." if len(extra) > 10 else "")
        raise ModelError(f"{graph.source}: the weights contain {len(extra)} array(s) no layer uses: {shown}")
