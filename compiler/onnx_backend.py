"""An onnx.backend.base.Backend over convc, so ONNX's own backend test suite can measure it.

prepare = parse + compile (the same pipeline as `compiler.compile`); run = call the compiled library.
The batch is the first axis of every run-time input. When a model has several graph inputs (the node tests'
Add(x, y), Gemm(A, B, C) ...), run() decides which carry the batch: first every input shaped like the first
one (same rank, same leading size), and if the model needs some of those as constants (Gemm's B), the first
input alone. The others are bound as constants, so one library is compiled per set of bound values (cached
by content hash like every other build).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep, Device, DeviceType

from .errors import ModelError
from .frontends.onnx import graph_from_model


def _compile(model: onnx.ModelProto, bind: dict[str, np.ndarray], opt_level: int | None):
    from . import pipeline
    graph = graph_from_model(model, f"<onnx model {model.graph.name or 'unnamed'}>", bind=bind)
    pipeline.validate_structure(graph)
    pipeline.infer_shapes(graph)
    pipeline.validate_weights(graph)
    kw = {} if opt_level is None else {"opt_level": opt_level}
    return graph, pipeline.compile(graph, **kw)


class ConvcRep(BackendRep):
    def __init__(self, model: onnx.ModelProto, opt_level: int | None = None):
        self.model = model
        self.opt_level = opt_level
        initializers = {i.name for i in model.graph.initializer}
        self.input_names = [i.name for i in model.graph.input if i.name not in initializers]
        self._compiled: dict[bytes, Any] = {}
        if len(self.input_names) <= 1:
            self._compiled[b""] = _compile(model, {}, opt_level)

    def _plans(self, inputs: list[np.ndarray]) -> list[frozenset[int]]:
        """Which inputs run with the batch (the rest are bound as constants), in the order to try:
        every input shaped like the first (same rank, same leading size), then the first alone."""
        first = inputs[0]
        alike = frozenset(i for i, v in enumerate(inputs) if v.ndim == first.ndim and v.shape[:1] == first.shape[:1])
        return [alike, frozenset({0})] if len(alike) > 1 else [frozenset({0})]

    def _library(self, inputs: list[np.ndarray]):
        if b"" in self._compiled:
            return self._compiled[b""], 0
        errors = []
        for plan in self._plans(inputs):
            bind = {n: v for i, (n, v) in enumerate(zip(self.input_names, inputs)) if i not in plan}
            key = repr(sorted(plan)).encode() + b"".join(
                n.encode() + v.dtype.str.encode() + repr(v.shape).encode() + v.tobytes() for n, v in bind.items())
            if key not in self._compiled:
                try:
                    self._compiled[key] = _compile(self.model, bind, self.opt_level)
                except ModelError as e:
                    errors.append(e)
                    continue
            return self._compiled[key], len(errors)
        raise errors[0]

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        if isinstance(inputs, dict):
            inputs = [inputs[n] for n in self.input_names]
        if isinstance(inputs, np.ndarray):
            inputs = [inputs]
        inputs = [np.asarray(v) for v in inputs]
        if len(inputs) != len(self.input_names):
            raise ValueError(f"the model takes {len(self.input_names)} input(s), got {len(inputs)}")
        (graph, model), _ = self._library(inputs)
        feeds = dict(zip(self.input_names, inputs))
        outs = model.run({n: np.ascontiguousarray(feeds[n], dtype=np.float32) for n in graph.inputs})
        return tuple(outs[name] for name in graph.outputs)


class ConvcBackend(Backend):
    @classmethod
    def supports_device(cls, device: str) -> bool:
        return Device(device).type == DeviceType.CPU

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> ConvcRep:
        super().prepare(model, device, **kwargs)  # checks the model
        if not cls.supports_device(device):
            raise ModelError(f"convc runs on the CPU only, not {device}")
        return ConvcRep(model, kwargs.get("opt_level"))

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU", **kwargs: Any):
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node: onnx.NodeProto, inputs: Sequence[np.ndarray], device: str = "CPU",
                 outputs_info=None, **kwargs: Any):
        raise NotImplementedError("convc compiles whole models; use prepare()")


prepare = ConvcBackend.prepare
run_model = ConvcBackend.run_model
supports_device = ConvcBackend.supports_device
