"""Memory plan: every tensor gets an offset in one per-sample arena, reused once its last reader has run.

Tensors of view ops (flatten, dropout) share their input's storage; the model input
and outputs live in the caller's arrays and constants in the weights, not in the arena.

A concat whose inputs are each one contiguous part of its output (a channel concat of C×H×W tensors, or of
channel-blocked ones whose parts are whole blocks, per sample) has its inputs computed in place (opt level 1 and
up): each input that a layer computes is a slice of the concat's output at its part's offset, so the concat
copies nothing for it (Inception, GoogLeNet, SqueezeNet). The concat's buffer is placed when its first slice is
computed and lives until the last reader of it or of any slice; a slice of a concat that is itself a slice
(cat(cat(a, b), c)) lies in the outermost one. A tensor read by several concats is a slice of the first only. But
a concat whose inputs are the first inputs of a later concat, in order and along the same axis, is itself a slice
of that one at offset 0 (a prefix): torchvision's DenseNet concatenates all earlier features anew in every layer,
cat(x0, f1), cat(x0, f1, f2), ..., so every feature of a dense block is computed once, in place in the block's
last concat, and no concat of the block copies anything.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from .batching import BatchTail
from .ir import Graph
from .kernels.select import KernelPlan

ALIGN_FLOATS = 16  # 64-byte alignment for every buffer


@dataclass(frozen=True)
class Buffer:
    """Where a tensor lives: in the arena at `offset` floats, in an input/output array, or in the weights."""
    kind: str  # "arena", "input", "output" or "const" (a constant's tensor in the weights)
    index: int  # arena offset in floats, or the position among inputs / outputs / constants
    size: int  # floats per sample


@dataclass(frozen=True)
class Slice:
    """A tensor computed in place inside the output of concat `parent`, `offset` floats from its start."""
    parent: str
    offset: int


@dataclass
class Arena:
    """The plan: each tensor's buffer, and the arena's size in floats per sample."""
    buffers: dict[str, Buffer]
    floats: int
    copies: list[tuple[str, str]]  # (output, tensor) pairs an output needs copied from a view's storage
    scratch: dict[str, Buffer] = field(default_factory=dict)  # per layer: arena block live only during its call
    slices: dict[str, Slice] = field(default_factory=dict)  # concat inputs computed in place in its output
    tail: BatchTail | None = None  # layers run once per group of samples (compiler/batching.py)
    group: dict[str, int] = field(default_factory=dict)  # the tail's tensors: where their rows start in the group area
    group_floats: int = 0  # the group area: tail.group rows of each of those tensors

    @property
    def bytes(self) -> int:
        return self.floats * 4


def storage_root(graph: Graph, name: str) -> str:
    """The tensor whose memory `name` uses (follows view ops back to a computed tensor)."""
    while graph.layer(name).spec.is_view:
        name = graph.layer(name).inputs[0]
    return name


def concat_slices(graph: Graph, kernels: KernelPlan) -> dict[str, Slice]:
    """The concat inputs that can be computed in place: per sample each is one contiguous part of the concat's
    output (the op's kernel_args say so; C×H×W tensors, or channel-blocked ones of whole blocks in the concat's
    layout, whose parts lie at the same offsets), at an offset that keeps 64-byte
    alignment; the concat computes a tensor of its own in the arena (not a view, not an output); the input is
    computed by a layer (not a model input, constant, view or output), read once by this concat and in place in
    no other. An earlier such concat of this one's first inputs (same order, same axis) is a slice at offset 0."""
    slices: dict[str, Slice] = {}
    outputs = {storage_root(graph, out) for out in graph.outputs}  # computed in (or copied to) the caller's arrays
    earlier: list = []  # the contiguous concats so far (candidates to be prefixes of a later one)
    for layer in graph.layers():
        if layer.op != "concat" or layer.name in outputs:
            continue
        args = layer.spec.kernel_args(layer, graph.in_shapes(layer.name), graph.out_shape(layer.name))
        if not args["contiguous"]:
            continue
        axis = layer.spec.axis(layer, graph.in_shapes(layer.name))
        for prefix in earlier:
            n = len(prefix.inputs)
            if (prefix.name not in slices and n < len(layer.inputs) and layer.inputs[:n] == prefix.inputs
                    and prefix.spec.axis(prefix, graph.in_shapes(prefix.name)) == axis):
                slices[prefix.name] = Slice(layer.name, 0)
        earlier.append(layer)
        for src, (_, offset) in zip(layer.inputs, args["parts"]):
            producer = graph.layer(src)
            same_layout = kernels.layouts.get(src, 0) == kernels.layouts.get(layer.name, 0)
            if (layer.inputs.count(src) == 1 and src not in slices and src not in outputs and same_layout
                    and offset % ALIGN_FLOATS == 0 and producer.op != "input"
                    and not producer.spec.is_constant and not producer.spec.is_view):
                slices[src] = Slice(layer.name, offset)
    return slices


def _place_in(name: str, slices: dict[str, Slice]) -> tuple[str, int]:
    """The outermost concat whose output holds tensor `name` (itself if none), and its offset there."""
    offset = 0
    while name in slices:
        offset += slices[name].offset
        name = slices[name].parent
    return name, offset


def computed_in_place(slices: dict[str, Slice], concat: str, src: str, part_offset: int) -> bool:
    """Whether tensor `src` already lies in concat's output at `part_offset` (its own part there): it is a slice
    of the concat, or of a prefix of it, at that offset."""
    offset = 0
    while src in slices:
        offset += slices[src].offset
        src = slices[src].parent
        if src == concat:
            return offset == part_offset
    return False


def _aligned(n: int) -> int:
    return -(-n // ALIGN_FLOATS) * ALIGN_FLOATS


def group_row_floats(floats: int) -> int:
    """The stride of a tensor's rows in the group area (compiler/batching.py)."""
    return _aligned(floats)


def plan_memory(graph: Graph, kernels: KernelPlan | None = None, tail: BatchTail | None = None) -> Arena:
    """kernels: the layers' chosen kernels, whose scratch (if any) is planned beside their live tensors
    (None: no kernel needs scratch, as at opt levels 0 and 1).
    tail: a batched tail (compiler/batching.py): besides the per-sample arena (where its layers still run for a
    batch of one) a group area holds tail.group rows of the tensor it starts from and of every tail tensor but
    the last, which is the caller's output array. Each row is group_row_floats long: aligned as the arena's
    tensors, so that a kernel called once per row reads its row as it reads the sample's tensor in the arena
    (a vectorized reduction's first aligned element, and so its sum, does not change)."""
    layers = graph.layers()
    order = {layer.name: i for i, layer in enumerate(layers)}
    slices = concat_slices(graph, kernels) if kernels is not None and kernels.opt_level >= 1 else {}
    # storage: views lead to their input; slices to the concat that holds them (offset: where in it)
    place = {layer.name: _place_in(storage_root(graph, layer.name), slices) for layer in layers}
    roots = {name: root for name, (root, _) in place.items()}
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
        name, root = layer.name, roots[layer.name]
        if root not in buffers and (root == name or name in slices):
            # the layer's own tensor, or (at the first of its slices) the concat that holds it
            holder = graph.layer(root)
            if holder.op == "input":
                buffers[root] = Buffer("input", graph.inputs.index(root), size[root])
            elif holder.spec.is_constant:
                buffers[root] = Buffer("const", constants.index(root), size[root])
            elif root in placed_outputs:
                buffers[root] = Buffer("output", placed_outputs[root], size[root])
            else:
                length = _aligned(size[root])
                offset = _first_fit(live, length)
                live.append((offset, length, root))
                live.sort()
                peak = max(peak, offset + length)
                buffers[root] = Buffer("arena", offset, size[root])
        need = kernels[name].scratch_floats if kernels is not None and name in kernels else 0
        if need:  # beside the live inputs and the output, free again after this layer
            offset = _first_fit(live, _aligned(need))
            peak = max(peak, offset + _aligned(need))
            scratch[name] = Buffer("arena", offset, need)
        # Free every block whose last reader is this layer (after placing its output: no in-place).
        live = [blk for blk in live if last_use.get(blk[2], len(layers)) > order[name] or blk[2] == root]
    for layer in layers:
        root, offset = place[layer.name]
        if root != layer.name:  # a view shares its input's storage; a slice lies inside its concat's
            buffers[layer.name] = dataclasses.replace(buffers[root], index=buffers[root].index + offset,
                                                      size=size[layer.name])
    group: dict[str, int] = {}
    group_floats = 0
    if tail is not None:
        for name in (tail.source, *tail.layers[:-1]):  # rows 64-byte aligned, as the arena's tensors are
            group[name] = group_floats
            group_floats += tail.group * group_row_floats(size[name])
    return Arena(buffers, peak, copies, scratch, slices, tail, group, group_floats)


def _first_fit(live: list[tuple[int, int, str]], length: int) -> int:
    offset = 0
    for start, used, _ in live:
        if start - offset >= length:
            return offset
        offset = max(offset, start + used)
    return offset
