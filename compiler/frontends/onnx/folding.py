"""Constant folding: a node whose inputs are all known at compile time is evaluated when the model is loaded,
with onnx's reference evaluator (Shape, Size and ConstantOfShape directly)."""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import numpy_helper

from .builder import Act, Builder
from .reading import node_attrs

# Ops never folded even with constant inputs: their value is not a function of their inputs.
NONDETERMINISTIC = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                    "Bernoulli"}


def foldable(node, inputs_known: list[bool]) -> bool:
    """Computable at compile time: constant inputs, or the shape/size of a run-time tensor (static per sample)."""
    if node.domain not in ("", "ai.onnx") or node.op_type in NONDETERMINISTIC:
        return False
    if node.op_type in ("Shape", "Size"):
        return True
    return all(inputs_known) and (bool(node.input) or node.op_type == "Constant")


def fold(b: Builder, node, ins: list, opset_imports, batch_value: int | None) -> list[np.ndarray]:
    """Evaluate a node whose inputs are all known at compile time. batch_value: the batch size a batched
    model was exported with (None: a whole-tensor model, whose shapes hold their batch axis)."""
    t = node.op_type
    if t == "Shape":  # of a run-time tensor too: its per-sample shape is static
        x = ins[0]
        lead = [] if batch_value is None else [batch_value]
        shape = [*lead, *x.shape] if isinstance(x, Act) else list(np.shape(x))
        attrs = node_attrs(node)
        start, end = attrs.get("start", 0), attrs.get("end", len(shape))
        return [np.array(shape[start:end] if "end" in attrs else shape[start:], dtype=np.int64)]
    if t == "Size" and isinstance(ins[0], Act):
        return [np.array((batch_value or 1) * int(np.prod(ins[0].shape)), dtype=np.int64)]
    if t == "ConstantOfShape":  # fast path: exporters build whole weight tensors this way
        try:
            fill = node_attrs(node).get("value")
            fill = np.zeros(1, np.float32) if fill is None else numpy_helper.to_array(fill).reshape(-1)[:1]
            shape = [int(d) for d in np.asarray(ins[0]).reshape(-1)]
        except Exception as e:  # a value tensor or shape that lies about its data
            raise b.fail(f"cannot read its value or shape: {type(e).__name__}: {e}") from None
        if fill.size != 1 or any(d < 0 for d in shape) or math.prod(shape) > b.limits.max_weights:
            raise b.fail(f"shape {shape} with {fill.size} fill value(s): needs one value and a shape of at most "
                         f"{b.limits.max_weights} elements (compiler.Limits.max_weights)")
        return [np.full(shape, fill[0], dtype=fill.dtype)]
    from onnx.reference import ReferenceEvaluator
    feeds = {name: v for name, v in zip(node.input, ins) if name}
    graph = onnx.helper.make_graph(
        [node], "fold",
        [onnx.helper.make_tensor_value_info(n, onnx.helper.np_dtype_to_tensor_dtype(np.asarray(v).dtype),
                                            np.shape(v)) for n, v in feeds.items()],
        [onnx.helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in node.output if o])
    model = onnx.helper.make_model(graph, opset_imports=list(opset_imports))
    try:
        outs = ReferenceEvaluator(model).run(None, {n: np.asarray(v) for n, v in feeds.items()})
    except Exception as e:
        raise b.fail(f"cannot evaluate this constant subgraph at compile time: {type(e).__name__}: {e}") from None
    return [np.asarray(o) for o in outs]

