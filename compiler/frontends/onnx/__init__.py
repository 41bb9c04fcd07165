"""ONNX model (.onnx) -> Graph, the same IR the native description produces.

Everything after parsing is shared with the native format. The batch is ONNX's leading axis of every
activation; the Graph holds per-sample shapes, and the ops' axis attributes count the batch as 0, as ONNX does.
Subgraphs whose inputs are all constants (initializers, Constant, shapes, ...) are folded here with
onnx's reference evaluator; every other node maps onto one or a few native layers.

reading.py reads the file (external data, opset upgrade, input shapes), builder.py holds the Builder and the
helpers the handlers share, handlers.py maps each ONNX op type, folding.py evaluates constant subgraphs.
Needs the optional `onnx` package (`pip install convc[onnx]`).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...errors import BatchAxisError, ModelError
from ...ir import Graph
from ...limits import DEFAULT_LIMITS, Limits
from ...ops import ONNX_TYPES
# .reading first: without the onnx package it raises the ModelError that names the extra to install.
from .reading import (LATEST_OPSET, MAX_MODEL_BYTES, check_node, check_outputs, check_unique_names, input_dims,
                      load_external_data, node_attrs, per_sample_shape, read_model, upgrade_opset)
from .builder import (Act, Builder, Value, axis_per_sample, const_input, first_act, ints, lift_1d, operand, pair,
                      per_sample_constant, spatial_2d, unlift_1d, window_padding)
from .handlers import HANDLERS, Handler, handles
from .folding import NONDETERMINISTIC, fold, foldable
from ..description import to_description  # it writes the native format; importable here as before the split

from onnx import numpy_helper  # noqa: E402  (after .reading, see above)

# What this package offered as one module, importable from here as before.
__all__ = ["graph_from_model", "parse_onnx", "read_model", "load_external_data", "MAX_MODEL_BYTES", "LATEST_OPSET",
           "Act", "Value", "Builder", "per_sample_constant", "operand", "axis_per_sample", "const_input", "ints",
           "first_act", "lift_1d", "unlift_1d", "spatial_2d", "window_padding", "pair", "Handler", "HANDLERS",
           "handles", "NONDETERMINISTIC", "fold", "to_description"]


def graph_from_model(model, source: str = "<onnx>", bind: dict[str, np.ndarray] | None = None,
                     limits: Limits = DEFAULT_LIMITS) -> Graph:
    """An onnx.ModelProto -> Graph without shapes (the pipeline infers and validates them).

    bind: values for graph inputs to treat as constants; the other inputs without initializers are run-time
    inputs, each with the batch as its first axis. The model imports batched (each sample on its own, any
    batch size at call time) unless a node acts across the batch axis or an input has no other axis: then it
    imports as a whole-tensor model for its inputs' fixed shapes (the batch size it was exported with).
    limits: size bounds checked as each layer is built (compiler.Limits).
    """
    try:
        return _graph_from_model(model, source, bind, True, limits)
    except BatchAxisError as batched_error:
        try:
            return _graph_from_model(model, source, bind, False, limits)
        except ModelError as whole_error:
            raise ModelError(f"{batched_error}; so the model must compile as whole tensors of fixed shape, but: "
                             f"{whole_error}") from None


def _graph_from_model(model, source: str, bind: dict[str, np.ndarray] | None, batched: bool,
                      limits: Limits) -> Graph:
    model, opset, upgraded_from = upgrade_opset(model, source)
    g = model.graph
    check_unique_names(model, source)
    check_outputs(model, source)

    values: dict[str, Value] = {}
    for init in g.initializer:
        try:
            values[init.name] = numpy_helper.to_array(init)
        except Exception as e:
            raise ModelError(f"{source}: initializer '{init.name}' cannot be read: {type(e).__name__}: {e}") from None
    for name, v in (bind or {}).items():
        values[name] = np.asarray(v)
    runtime_inputs = [i for i in g.input if i.name not in values]
    if not runtime_inputs:
        raise ModelError(f"{source}: the model has no run-time input (every graph input has an initializer)")
    per_sample_shapes = [per_sample_shape(i, source, batched) for i in runtime_inputs]
    first_dim = input_dims(runtime_inputs[0])[0]
    batch = first_dim if isinstance(first_dim, int) and first_dim >= 1 else None

    # Which tensors are known at compile time, and which nodes have no mapping.
    known = set(values)
    unsupported: dict[str, list[str]] = {}
    for node in g.node:
        domain = node.domain if node.domain not in ("", "ai.onnx") else ""
        if foldable(node, [(not i) or i in known for i in node.input]):
            known.update(o for o in node.output if o)
        elif domain or node.op_type not in ONNX_TYPES:
            key = f"{domain}.{node.op_type}" if domain else node.op_type
            unsupported.setdefault(key, []).append(node.name or node.output[0] if node.output else "?")
    if unsupported:
        counts = ", ".join(f"{t} ×{len(n)}" for t, n in sorted(unsupported.items()))
        listing = "; ".join(f"{t}: {', '.join(map(repr, n[:8]))}{' ...' if len(n) > 8 else ''}"
                            for t, n in sorted(unsupported.items()))
        raise ModelError(f"{source}: unsupported: {counts} (nodes {listing})")

    reserved = {i.name for i in g.input} | {o for n in g.node for o in n.output} | {o.name for o in g.output}
    b = Builder(source, reserved, batched, limits)
    b.opset = opset
    b.upgraded_from = upgraded_from
    b.used = {i for n in g.node for i in n.input if i} | {o.name for o in g.output}
    b.batch = batch if batch is not None else 1
    for inp, shape in zip(runtime_inputs, per_sample_shapes):
        values[inp.name] = b.add(inp.name, "input", {"shape": shape}, [])
    input_names = {i.name for i in runtime_inputs}

    for node in g.node:
        b.node = node
        if node.domain in ("", "ai.onnx"):
            check_node(b, node, opset)
        ins = []
        for i in node.input:
            if not i:
                ins.append(None)
            elif i not in values:
                raise b.fail(f"input '{i}' is not produced by any earlier node (nodes must be topologically sorted)")
            else:
                ins.append(values[i])
        if foldable(node, [not isinstance(v, Act) for v in ins]):
            outs = fold(b, node, ins, model.opset_import, b.batch if b.batched else None)
        else:
            name = node.output[0] if node.output and node.output[0] else b.helper_name(node.name or node.op_type)
            outs = HANDLERS[node.op_type](b, node, ins, node_attrs(node), name)
        for o, v in zip(node.output, outs):
            if o:
                values[o] = v
    b.node = None

    outputs = []
    for out in g.output:
        v = values.get(out.name)
        if v is None:
            raise ModelError(f"{source}: output '{out.name}' is not produced by any node")
        if not isinstance(v, Act):
            raise ModelError(f"{source}: output '{out.name}' is a constant; convc models compute their outputs "
                             "from the input")
        if v.layer != out.name or v.layer in outputs or v.layer in input_names:
            v = b.add(out.name if out.name not in b.shapes else b.helper_name(out.name), "identity", {}, [v])
        outputs.append(v.layer)
    name = g.name or Path(source).stem
    return Graph.from_layers(name, b.layers, outputs, b.weights, source)


def parse_onnx(path: str | os.PathLike, allow_outside_paths: bool = False,
               limits: Limits = DEFAULT_LIMITS) -> tuple[Graph, None]:
    """A .onnx file -> (Graph, None): the weights come from the file, so there is no seed."""
    path = Path(path)
    model = read_model(path, allow_outside_paths)
    return graph_from_model(model, str(path), limits=limits), None


