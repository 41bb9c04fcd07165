"""The NumPy interpreter: the golden reference every compiled model is tested against.

It evaluates each layer's `Op.reference` in float64 and never touches lowering or C.
"""
from __future__ import annotations

import numpy as np

from .ir import Graph


def check_inputs(graph: Graph, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The inputs as float64, each with a batch axis first (a whole-tensor model's get a batch of one)."""
    if not isinstance(inputs, dict):
        raise TypeError(f"inputs must be a dict of name -> array, got {type(inputs).__name__}")
    unknown = sorted(set(inputs) - set(graph.inputs))
    missing = sorted(set(graph.inputs) - set(inputs))
    if unknown or missing:
        raise ValueError(f"model {graph.name!r} takes inputs {graph.inputs}; missing {missing}, unknown {unknown}")
    out = {}
    for name, x in inputs.items():
        x = np.asarray(x)
        want = graph.shape(name)
        if graph.batched and (x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want or x.shape[0] < 1):
            raise ValueError(f"input {name!r}: expected shape [N, {', '.join(map(str, want))}] with N ≥ 1, "
                             f"got {list(x.shape)}")
        if not graph.batched and tuple(x.shape) != want:
            raise ValueError(f"input {name!r}: expected shape [{', '.join(map(str, want))}] exactly (the model "
                             f"computes this whole tensor), got {list(x.shape)}")
        if x.dtype.kind not in "fiu":
            raise ValueError(f"input {name!r}: expected float32 data, got dtype {x.dtype}")
        out[name] = x.astype(np.float64) if graph.batched else x.astype(np.float64)[None]
    return out


def interpret(graph: Graph, inputs: dict[str, np.ndarray], *, all_layers: bool = False,
              dtype=np.float32) -> dict[str, np.ndarray]:
    """Run the graph on its inputs (batched: [N, *shape]; a whole-tensor model: exactly its input shapes);
    returns the outputs (or every layer's tensor) cast to `dtype`, shaped as the inputs are."""
    values = check_inputs(graph, inputs)
    batch = next(iter(values.values())).shape[0]
    for layer in graph.layers():
        if layer.op == "input":
            continue
        args = [values[i] for i in layer.inputs]
        weights = graph.layer_weights(layer.name)
        if graph.runs_per_sample(layer.name):  # the leading axis is the op's batch
            value = layer.spec.reference(layer, [a[0] for a in args], weights)[None]
        else:
            value = layer.spec.reference(layer, args, weights)
        if not args:  # a source such as `constant`: one sample, the same for every sample of the batch
            value = np.broadcast_to(value, (batch, *value.shape[1:]))
        values[layer.name] = value
    names = [layer.name for layer in graph.layers()] if all_layers else graph.outputs
    return {n: (values[n] if graph.batched else values[n][0]).astype(dtype) for n in names}
