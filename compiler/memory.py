"""Memory plan: every tensor gets an offset in one per-sample arena, reused once its last reader has run.

Tensors of view ops (flatten, dropout) share their input's storage; the model input
and outputs live in the caller's arrays and constants in the weights, not in the arena.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .ir import Graph
from .target import Target

ALIGN_FLOATS = 16  # 64-byte alignment for every buffer


@dataclass(frozen=True)
class Buffer:
    """Where a tensor lives: in the arena at `offset` floats, in an input/output array, or in the weights."""
    kind: str  # "arena", "input", "output" or "const" (a constant's tensor in the weights)
    index: int  # arena offset in floats, or the position among inputs / outputs / constants
    size: int  # floats per sample


@dataclass
class Arena:
    """The plan: each tensor's buffer, and the arena's size in floats per sample."""
    buffers: dict[str, Buffer]
    floats: int
    copies: list[tuple[str, str]]  # (output, tensor) pairs an output needs copied from a view's storage
    scratch: dict[str, Buffer] = field(default_factory=dict)  # per layer: arena block live only during its call

    @property
    def bytes(self) -> int:
        return self.floats * 4


def storage_root(graph: Graph, name: str) -> str:
    """The tensor whose memory `name` uses (follows view ops back to a computed tensor)."""
    while graph.layer(name).spec.is_view:
        name = graph.layer(name).inputs[0]
    return name


def _aligned(n: int) -> int:
    return -(-n // ALIGN_FLOATS) * ALIGN_FLOATS


def plan_memory(graph: Graph, opt_level: int = 0, target: Target | None = None) -> Arena:
    """opt_level, target: what the graph will be lowered for, which decides the kernels' scratch needs
    (target is needed from opt level 2)."""
    if opt_level >= 2 and target is None:
        raise ValueError("opt level 2 plans the scratch of kernels chosen for a target: pass target=")
    layers = graph.layers()
    order = {layer.name: i for i, layer in enumerate(layers)}
    roots = {layer.name: storage_root(graph, layer.name) for layer in layers}
    size = {layer.name: int(np.prod(graph.shape(layer.name))) for layer in layers}

    # Last step at which each storage root is read.
    last_use: dict[str, int] = {}
    for layer in layers:
        for src in layer.inputs:
            r = roots[src]
            last_use[r] = max(last_use.get(r, -1), order[layer.name])

    buffers: dict[str, Buffer] = {}
    scratch: dict[str, Buffer] = {}
    copies: list[tuple[str, str]] = []
    placed_outputs: dict[str, int] = {}
    for i, out in enumerate(graph.outputs):
        r = roots[out]
        if graph.layer(r).op == "input" or graph.layer(r).spec.is_constant or r in placed_outputs:
            copies.append((out, r))  # the caller's output array needs its own copy
        else:
            placed_outputs[r] = i

    constants = [layer.name for layer in layers if layer.spec.is_constant]
    live: list[tuple[int, int, str]] = []  # (offset, length, root) of arena blocks in use
    peak = 0
    for layer in layers:
        name = layer.name
        if roots[name] != name:
            continue
        if layer.op == "input":
            buffers[name] = Buffer("input", graph.inputs.index(name), size[name])
        elif layer.spec.is_constant:
            buffers[name] = Buffer("const", constants.index(name), size[name])
        elif name in placed_outputs:
            buffers[name] = Buffer("output", placed_outputs[name], size[name])
        else:
            length = _aligned(size[name])
            offset = _first_fit(live, length)
            live.append((offset, length, name))
            live.sort()
            peak = max(peak, offset + length)
            buffers[name] = Buffer("arena", offset, size[name])
        if layer.op != "input" and not layer.spec.is_constant:
            need = layer.spec.scratch_floats(layer, graph.in_shapes(name), graph.shape(name), opt_level, target)
            if need:  # beside the live inputs and the output, free again after this layer
                offset = _first_fit(live, _aligned(need))
                peak = max(peak, offset + _aligned(need))
                scratch[name] = Buffer("arena", offset, need)
        # Free every block whose last reader is this layer (after placing its output: no in-place).
        live = [blk for blk in live if last_use.get(blk[2], len(layers)) > order[name] or blk[2] == name]
    for layer in layers:
        if roots[layer.name] != layer.name:
            buffers[layer.name] = buffers[roots[layer.name]]
    return Arena(buffers, peak, copies, scratch)


def _first_fit(live: list[tuple[int, int, str]], length: int) -> int:
    offset = 0
    for start, used, _ in live:
        if start - offset >= length:
            return offset
        offset = max(offset, start + used)
    return offset
