"""Per-layer report: output shape, parameters, MACs, receptive field and the size formula."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from .ir import Graph
from .ops.base import Window, fmt_shape


@dataclass(frozen=True)
class LayerRow:
    name: str
    op: str
    shape: tuple[int, ...]
    params: int
    macs: int
    receptive_field: tuple[int, int] | None
    formula: str


@dataclass(frozen=True)
class Summary:
    model: str
    rows: list[LayerRow]
    params: int
    macs: int
    activation_bytes: int  # every tensor once, per sample
    arena_bytes: int  # what the memory plan of the layers as written (opt_level 0) needs, per sample
    warnings: list[str]

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    def __str__(self) -> str:
        head = ("layer", "op", "output C×H×W", "params", "MACs", "RF", "output size")
        body = [(r.name if len(r.name) <= 40 else r.name[:37] + "...", r.op, fmt_shape(r.shape),
                 f"{r.params:,}", f"{r.macs:,}",
                 "" if r.receptive_field is None else "×".join(map(str, r.receptive_field)), r.formula)
                for r in self.rows]
        widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
        right = {3, 4}

        def line(cells):
            return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                             for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
        out = [f"model {self.model}", line(head), line(["-" * w for w in widths])]
        out += [line(b) for b in body]
        out.append(line(["-" * w for w in widths]))
        out.append(f"total: {self.params:,} parameters ({self.params * 4:,} bytes), {self.macs:,} MACs per sample")
        out.append(f"activations: {self.activation_bytes:,} bytes per sample over all tensors; "
                   f"arena (reused by liveness): {self.arena_bytes:,} bytes per sample "
                   "(the layers as written, opt_level 0; a compiled model's is model.arena_floats)")
        out += [f"warning: {w}" for w in self.warnings]
        return "\n".join(out)


def receptive_fields(graph: Graph) -> dict[str, tuple[int, int] | None]:
    """Input pixels (rows × columns) one output neuron of each layer sees, capped at the input size."""
    in_shape = graph.shape(graph.inputs[0])
    if len(in_shape) != 3:
        return {layer.name: None for layer in graph.layers()}
    full = (in_shape[1], in_shape[2])
    state: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {}  # name -> (rf, jump)
    for layer in graph.layers():
        if layer.op == "input":
            state[layer.name] = ((1, 1), (1, 1))
            continue
        if not layer.inputs:  # a constant: sees no input pixel
            state[layer.name] = ((0, 0), (1, 1))
            continue
        ins = [state[i] for i in layer.inputs]
        rf = tuple(max(s[0][a] for s in ins) for a in range(2))
        jump = tuple(max(s[1][a] for s in ins) for a in range(2))
        win = layer.spec.window(layer, graph.in_shapes(layer.name))
        if isinstance(win, Window):
            rf = tuple(rf[a] + (win.kernel[a] - 1) * jump[a] for a in range(2))
            jump = tuple(jump[a] * win.stride[a] for a in range(2))
        elif win == "global" or len(graph.in_shapes(layer.name)[0]) == 1 and layer.op == "dense":
            rf = full
        state[layer.name] = (tuple(min(r, f) for r, f in zip(rf, full)), jump)
    return {name: s[0] if s[0] != (0, 0) else None for name, s in state.items()}


def summarize(graph: Graph) -> Summary:
    from .memory import plan_memory
    rfs = receptive_fields(graph)
    rows = []
    for layer in graph.layers():
        ins, out = graph.in_shapes(layer.name), graph.out_shape(layer.name)
        spec = layer.spec
        params = sum(int(np.prod(s)) for s in spec.weight_shapes(layer, ins).values())
        macs = spec.macs(layer, ins, out) * graph.repeats(layer.name) if ins else 0
        rows.append(LayerRow(layer.name, layer.op, graph.shape(layer.name), params, macs,
                             rfs[layer.name], spec.formula(layer, ins, out) if ins else ""))
    activations = sum(int(np.prod(r.shape)) * 4 for r, layer in zip(rows, graph.layers())
                      if not (layer.spec.is_view or layer.spec.is_constant))
    return Summary(graph.name, rows, sum(r.params for r in rows), sum(r.macs for r in rows), activations,
                   plan_memory(graph).bytes, list(graph.warnings))
