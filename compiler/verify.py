"""Invariants between the back end's stages, checked in tests.

Each check takes what a stage made, with what it was made from, and raises `InvariantError` naming the
layer or tensor and what is wrong:

- `verify_graph`: the IR, after loading and after every pass: layers, edges, a DAG, shapes by each op's
  rule, the model's inputs and outputs, the weights each layer needs;
- `verify_kernel_plan`: select_kernels' records: one per computed layer, a kernel that computes the op
  and can take the layer, and layouts that producer and readers agree on;
- `verify_memory`: plan_memory's arena: every tensor planned at its size, views in their root's storage,
  every output reaching its array, no two live tensors (or a scratch block and a live tensor) overlapping,
  64-byte alignment;
- `verify_lowered`: lower's records: one kernel and one call per computed layer, in order, with the memory
  plan's pointers; the copies the plan asks for;
- `verify_batch_tail`: the batched tail (compiler/batching.py): a trailing chain, its group area's rows
  apart and inside it, and its calls reading and writing those rows in order, the last the model's output;
- `verify_pipeline`: optimize (pass by pass) -> select_kernels -> plan_memory -> lower with every check.

The checks recompute what they compare against (storage roots, lifetimes, pointers) from the graph, not
from the stage they check, so a bug in a stage cannot vouch for itself.
"""
from __future__ import annotations

import dataclasses

import warnings
from collections.abc import Mapping
from typing import Any

import networkx as nx
import numpy as np

from .batching import BatchTail, plan_batch_tail
from .errors import ModelError
from .ir import Graph, Layer
from .kernels import KERNELS
from .kernels.select import KernelPlan, computes, layout_name, select_kernels
from .lower import Copy, LoweredModel, Pointer, SampleTensor, lower
from .memory import ALIGN_FLOATS, Arena, Buffer, group_row_floats, plan_memory
from .ops.base import fmt_shape
from .passes import PIPELINES
from .target import Target

BUFFER_KINDS = ("arena", "input", "output", "const")


class InvariantError(Exception):
    """A stage's output breaks an invariant; the message names the layer or tensor and what is wrong."""


def _fail(message: str) -> None:
    raise InvariantError(message)


def _floats(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _root(graph: Graph, name: str) -> str:
    """The tensor whose storage `name` is: views (flatten, reshape, dropout, identity) lead back to their input."""
    while graph.layer(name).spec.is_view:
        name = graph.layer(name).inputs[0]
    return name


# ---------------------------------------------------------------- the graph
def verify_graph(graph: Graph) -> None:
    """Every node is a layer with a shape; edges are the layers' `inputs`; a DAG; each shape is what the op's
    rule gives for its inputs' shapes; the model's inputs are its input layers and its outputs exist; each
    layer's weights are present as float32 with the shapes `weight_shapes` says, and no others."""
    _check_nodes(graph)
    _check_inputs_and_outputs(graph)
    _check_shapes_and_weights(graph)


def _check_nodes(graph: Graph) -> None:
    g = graph.nx
    for name, data in g.nodes(data=True):
        layer = data.get("layer")
        if not isinstance(layer, Layer):
            _fail(f"node {name!r} has no layer")
        if layer.name != name:
            _fail(f"node {name!r} holds layer {layer.name!r}")
        shape = data.get("shape")
        if not (isinstance(shape, tuple) and shape and all(isinstance(d, int) and d >= 1 for d in shape)):
            _fail(f"{layer.where}: shape {shape!r} is not a tuple of positive ints (infer_shapes has not run?)")
        missing = [src for src in layer.inputs if src not in g]
        if missing:
            _fail(f"{layer.where}: reads {', '.join(map(repr, missing))}, which is not a layer")
        if set(g.predecessors(name)) != set(layer.inputs):
            _fail(f"{layer.where}: its edges come from {sorted(g.predecessors(name))}, its inputs are "
                  f"{list(layer.inputs)}")
        arity = layer.spec.arity
        if arity is not None and len(layer.inputs) != arity:
            _fail(f"{layer.where}: {layer.op} takes {arity} input(s), it has {len(layer.inputs)}")
        gone = [m for m in layer.merged if m in g or m == name]
        if gone:
            _fail(f"{layer.where}: lists {', '.join(map(repr, gone))} as merged into it, but that layer is still "
                  "in the graph")
    if not nx.is_directed_acyclic_graph(g):
        cycle = " -> ".join(u for u, _ in nx.find_cycle(g))
        _fail(f"{graph.source}: the layers form a cycle: {cycle}")


def _check_inputs_and_outputs(graph: Graph) -> None:
    input_layers = [n for n in graph.nx if graph.layer(n).op == "input"]
    if sorted(graph.inputs) != sorted(input_layers) or len(set(graph.inputs)) != len(graph.inputs):
        _fail(f"{graph.source}: the model's inputs {graph.inputs} are not its input layers {input_layers}")
    if not graph.outputs:
        _fail(f"{graph.source}: the model has no output")
    unknown = [o for o in graph.outputs if o not in graph.nx]
    if unknown:
        _fail(f"{graph.source}: the outputs {unknown} are not layers")
    if len(set(graph.outputs)) != len(graph.outputs):
        _fail(f"{graph.source}: the outputs {graph.outputs} name a layer twice")


def _check_shapes_and_weights(graph: Graph) -> None:
    expected: dict[str, tuple[Layer, tuple[int, ...]]] = {}
    optional: set[str] = set()
    for layer in graph.layers():
        ins = graph.in_shapes(layer.name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. input rows a stride never reads: legal
            try:
                rule = tuple(int(d) for d in layer.spec.infer_shape(layer, ins))
            except ModelError as e:
                _fail(f"{layer.where}: its op's shape rule rejects inputs {[fmt_shape(s) for s in ins]}: {e}")
        if rule != graph.out_shape(layer.name):
            _fail(f"{layer.where}: shape {fmt_shape(graph.shape(layer.name))}, but {layer.op}'s rule gives "
                  f"{fmt_shape(rule)} for inputs {', '.join(fmt_shape(s) for s in ins) or 'none'}")
        for suffix, shape in layer.spec.weight_shapes(layer, ins).items():
            expected[f"{layer.name}.{suffix}"] = (layer, tuple(shape))
        optional |= {f"{layer.name}.{s}" for s in layer.spec.optional_weights(layer)}
    for key, (layer, shape) in expected.items():
        if key not in graph.weights:
            _fail(f"{layer.where}: weight {key!r} {fmt_shape(shape)} is missing")
        value = graph.weights[key]
        if not isinstance(value, np.ndarray) or tuple(value.shape) != shape or value.dtype != np.float32:
            _fail(f"{layer.where}: weight {key!r} is {getattr(value, 'dtype', type(value).__name__)} "
                  f"{fmt_shape(getattr(value, 'shape', ()))}, expected float32 {fmt_shape(shape)}")
    extra = sorted(set(graph.weights) - set(expected) - optional)
    if extra:
        _fail(f"{graph.source}: weights {extra} belong to no layer")


def verify_interface(before: Graph, after: Graph) -> None:
    """A pass keeps the model's interface: the same inputs and outputs, in order, with the same shapes."""
    for what, old, new in (("inputs", before.inputs, after.inputs), ("outputs", before.outputs, after.outputs)):
        if list(old) != list(new):
            _fail(f"{after.source}: the model's {what} were {list(old)}, now {list(new)}")
        for name in old:
            if before.shape(name) != after.shape(name):
                _fail(f"{after.source}: {what[:-1]} {name!r} was {fmt_shape(before.shape(name))}, now "
                      f"{fmt_shape(after.shape(name))}")


# ---------------------------------------------------------------- the kernel plan
def verify_kernel_plan(graph: Graph, plan: KernelPlan) -> None:
    """One KernelChoice per computed layer (not the input, a view or a constant) and none for anything else;
    each names a kernel that computes the op at the plan's opt level and can take the layer, with one layout
    per input and one for the output; producer and readers agree on every tensor's layout, and so does
    `plan.layouts`; the model's inputs and outputs and whatever a view reads are C×H×W; a blocked tensor is
    C×H×W with C a multiple of the target's lanes."""
    for layer in graph.layers():
        if computes(layer) and layer.name not in plan.choices:
            _fail(f"{layer.where}: computes a tensor but has no kernel choice")
    for name in plan.choices:
        if name not in graph.nx:
            _fail(f"the kernel plan has a choice for {name!r}, which is not a layer")
        if not computes(graph.layer(name)):
            _fail(f"{graph.layer(name).where}: has a kernel choice but computes nothing (input, view or constant)")
        _check_choice(graph, plan, graph.layer(name))
    _check_layouts(graph, plan)


def _check_choice(graph: Graph, plan: KernelPlan, layer: Layer) -> None:
    """The choice is this layer's, its kernel can compute it at the plan's level, and its record is complete."""
    choice = plan.choices[layer.name]
    ins, out = graph.in_shapes(layer.name), graph.out_shape(layer.name)
    if (choice.layer, choice.op, choice.sources, tuple(choice.shape)) != (layer.name, layer.op, layer.sources, out):
        _fail(f"{layer.where}: its choice describes layer {choice.layer!r} ({choice.op}: "
              f"{' + '.join(choice.sources)}) of shape {fmt_shape(choice.shape)}, not this one of shape "
              f"{fmt_shape(out)}")
    kernel = KERNELS.get(choice.kernel)
    if kernel is None:
        _fail(f"{layer.where}: kernel {choice.kernel!r} is not a kernel")
    if kernel.ops and layer.op not in kernel.ops:
        _fail(f"{layer.where}: kernel {kernel.name!r} computes {', '.join(kernel.ops)}, not {layer.op}")
    if kernel.opt_level > plan.opt_level:
        _fail(f"{layer.where}: kernel {kernel.name!r} is used from opt level {kernel.opt_level}; the plan is "
              f"for opt level {plan.opt_level}")
    why_not = kernel.unsuitable(layer, ins, out, plan.target)
    if why_not is not None:
        _fail(f"{layer.where}: kernel {kernel.name!r} cannot take it: {why_not}")
    if len(choice.layouts) != len(layer.inputs) + 1:
        _fail(f"{layer.where}: {len(choice.layouts)} layouts for {len(layer.inputs)} input(s) and the output")
    if choice.template != kernel.template_for(layer, choice.params):
        _fail(f"{layer.where}: template {choice.template!r}; kernel {kernel.name!r} renders "
              f"{kernel.template_for(layer, choice.params)!r}")
    if choice.rows_template != kernel.rows_template_for(layer, choice.params):
        _fail(f"{layer.where}: batched template {choice.rows_template!r}; kernel {kernel.name!r} renders "
              f"{kernel.rows_template_for(layer, choice.params)!r}")
    if choice.scratch_floats != kernel.scratch_floats(choice.params) or choice.scratch_floats < 0:
        _fail(f"{layer.where}: scratch_floats {choice.scratch_floats}; kernel {kernel.name!r} needs "
              f"{kernel.scratch_floats(choice.params)}")


def _check_layouts(graph: Graph, plan: KernelPlan) -> None:
    """Each tensor's layout: as its producer writes it (C×H×W without a kernel), in plan.layouts and as every
    reader reads it."""
    written = {name: plan.choices[name].layouts[-1] if name in plan.choices else 0 for name in graph.nx}
    for name in plan.layouts:
        if name not in graph.nx:
            _fail(f"the plan's layouts name {name!r}, which is not a tensor")
    if plan.opt_level < 2 and any(plan.layouts.values()):
        _fail(f"opt level {plan.opt_level} stores tensors channel-blocked: {sorted(plan.layouts)}")
    for name in graph.inputs + graph.outputs:
        if written[name] or plan.layouts.get(name, 0):
            what = "input" if name in graph.inputs else "output"
            _fail(f"tensor {name!r}: a model {what} must be C×H×W (the caller's array), it is "
                  f"{layout_name(written[name] or plan.layouts[name])}")
    for layer in graph.layers():
        name, lanes = layer.name, written[layer.name]
        if plan.layouts.get(name, 0) != lanes:
            _fail(f"tensor {name!r}: the plan's layouts say {layout_name(plan.layouts.get(name, 0))}, its producer "
                  f"writes {layout_name(lanes)}")
        if lanes:
            shape = graph.out_shape(name)  # per sample for a per-sample op in a whole-tensor model
            if lanes != plan.target.lanes:
                _fail(f"tensor {name!r}: blocked by {lanes} lanes; the target's vectors have {plan.target.lanes}")
            if len(shape) != 3 or shape[0] % lanes:
                _fail(f"tensor {name!r}: {fmt_shape(shape)} cannot be blocked by {lanes} lanes (needs C×H×W with "
                      f"C a multiple of {lanes})")
        for reader in graph.consumers(name):
            reader_layer = graph.layer(reader)
            for i in (i for i, src in enumerate(reader_layer.inputs) if src == name):
                if reader in plan.choices:
                    read, by = plan.choices[reader].layouts[i], f"kernel {plan.choices[reader].kernel!r}"
                else:
                    read, by = 0, f"{reader_layer.op}, which has no kernel and reads C×H×W"
                if read != lanes:
                    _fail(f"tensor {name!r}: its producer writes {layout_name(lanes)}, but {reader_layer.where} "
                          f"({by}) reads it as input {i} in {layout_name(read)}")


# ---------------------------------------------------------------- the memory plan
def verify_memory(graph: Graph, plan: KernelPlan, arena: Arena) -> None:
    """Every tensor has a buffer of its element count; views share their root's; the input and constants live in
    the caller's array and the weights, each output in its array or copied there once; arena blocks are
    64-byte aligned inside the arena; no two tensors whose lifetimes overlap share a float (so no layer's
    output overlaps its inputs); each layer's scratch is as large as its kernel needs and overlaps nothing live
    during its call."""
    roots = {name: _root(graph, name) for name in graph.nx}
    _check_buffers(graph, arena, roots)
    _check_slices(graph, arena)
    _check_outputs(graph, arena, roots)
    # A whole number of 64-byte lines, so that each thread's arena slot (model.c.j2) starts on one too.
    if arena.floats < 0 or arena.floats % ALIGN_FLOATS:
        _fail(f"the arena has {arena.floats} floats, not a multiple of {ALIGN_FLOATS} (64 bytes): the next "
              "thread's slot would not be aligned")
    _check_overlaps(graph, plan, arena)


def _storage(graph: Graph, arena: Arena, name: str) -> str:
    """The tensor that owns the arena block `name` lies in: views lead to their input, slices computed in place to
    the concat holding them (and its holder, if it is a slice too)."""
    name = _root(graph, name)
    while name in arena.slices:
        name = _root(graph, arena.slices[name].parent)
    return name


def _check_prefix(graph: Graph, arena: Arena, name: str, piece) -> None:
    """A concat placed in a later concat that does not read it: it must be a prefix of it (the same first inputs,
    in order, along the same axis) at offset 0, so that every part of it is the later one's part."""
    concat, prefix = graph.layer(piece.parent), graph.layer(name)
    n = len(prefix.inputs)
    if (prefix.op != "concat" or n >= len(concat.inputs) or concat.inputs[:n] != prefix.inputs or piece.offset != 0
            or prefix.spec.axis(prefix, graph.in_shapes(name)) != concat.spec.axis(concat, graph.in_shapes(concat.name))):
        _fail(f"tensor {name!r} is placed in concat {concat.name!r}, which reads it 0 times, and it is not a concat "
              "of that one's first inputs (a prefix) at offset 0")
    size = int(np.prod(graph.shape(name)))
    if arena.buffers[name] != Buffer("arena", arena.buffers[concat.name].index, size):
        _fail(f"concat {name!r}: buffer {arena.buffers[name]}, but as a prefix of concat {concat.name!r} "
              f"({arena.buffers[concat.name]}) it starts where that one does")


def _check_slices(graph: Graph, arena: Arena) -> None:
    """A tensor computed in place in a concat's output is one of its inputs, once, and lies exactly where the
    concat would copy it (its part's offset, per sample one contiguous part), 64-byte aligned, in the arena; or it
    is a concat of that concat's first inputs (a prefix), at offset 0."""
    for name, piece in arena.slices.items():
        if piece.parent not in graph.nx or graph.layer(piece.parent).op != "concat":
            _fail(f"tensor {name!r} is placed in {piece.parent!r}, which is not a concat")
        concat = graph.layer(piece.parent)
        if concat.inputs.count(name) == 0 and graph.layer(name).op == "concat":
            _check_prefix(graph, arena, name, piece)
            continue
        if concat.inputs.count(name) != 1:
            _fail(f"tensor {name!r} is placed in concat {concat.name!r}, which reads it {concat.inputs.count(name)} "
                  "times")
        args = concat.spec.kernel_args(concat, graph.in_shapes(concat.name), graph.out_shape(concat.name))
        size, offset = args["parts"][concat.inputs.index(name)]
        if not args["contiguous"] or piece.offset != offset:
            _fail(f"tensor {name!r} is placed at float {piece.offset} of concat {concat.name!r}, whose part for it "
                  f"is {'at ' + str(offset) if args['contiguous'] else 'not one contiguous block'}")
        want = Buffer("arena", arena.buffers[concat.name].index + offset, size)
        if arena.buffers[concat.name].kind != "arena" or arena.buffers[name] != want or offset % ALIGN_FLOATS:
            _fail(f"tensor {name!r}: buffer {arena.buffers[name]}, but its part of concat {concat.name!r} "
                  f"({arena.buffers[concat.name]}) is {want} (64-byte aligned)")


def _check_buffers(graph: Graph, arena: Arena, roots: dict[str, str]) -> None:
    constants = [layer.name for layer in graph.layers() if layer.spec.is_constant]
    unknown = sorted(set(arena.buffers) - set(graph.nx))
    if unknown:
        _fail(f"the memory plan has buffers for {unknown}, which are not tensors")
    for layer in graph.layers():
        name, root = layer.name, roots[layer.name]
        buf = arena.buffers.get(name)
        if buf is None:
            _fail(f"tensor {name!r} ({layer.op}) has no buffer")
        if buf.kind not in BUFFER_KINDS:
            _fail(f"tensor {name!r}: buffer kind {buf.kind!r} is none of {BUFFER_KINDS}")
        if buf.size != _floats(graph.shape(name)):
            _fail(f"tensor {name!r}: buffer of {buf.size} floats for {fmt_shape(graph.shape(name))} = "
                  f"{_floats(graph.shape(name))} values")
        if root != name:
            if buf != arena.buffers.get(root):
                _fail(f"tensor {name!r}: a view ({layer.op}) of {root!r} must share its buffer "
                      f"{arena.buffers.get(root)}, has {buf}")
        elif layer.op == "input" and buf != Buffer("input", graph.inputs.index(name), buf.size):
            _fail(f"tensor {name!r}: buffer {buf}, expected {Buffer('input', graph.inputs.index(name), buf.size)}")
        elif layer.spec.is_constant and buf != Buffer("const", constants.index(name), buf.size):
            _fail(f"tensor {name!r}: buffer {buf}, expected {Buffer('const', constants.index(name), buf.size)}")
        elif computes(layer) and buf.kind not in ("arena", "output"):
            _fail(f"tensor {name!r}: computed by {layer.op}, but its buffer is {buf.kind!r}")


def _check_outputs(graph: Graph, arena: Arena, roots: dict[str, str]) -> None:
    """Each output reaches its array: it is computed there, or copied there once from its storage."""
    for i, out in enumerate(graph.outputs):
        root = roots[out]
        placed = arena.buffers[root] == Buffer("output", i, arena.buffers[root].size)
        copies = [src for dst, src in arena.copies if dst == out]
        if placed and copies:
            _fail(f"output {out!r} is computed in its array and also copied there from {copies}")
        if not placed and copies != [root]:
            _fail(f"output {out!r} (storage {root!r}, buffer {arena.buffers[root]}) is not computed in output array "
                  f"{i}, and the copies into it are from {copies}, not from {root!r} once")
    for dst, _ in arena.copies:
        if dst not in graph.outputs:
            _fail(f"the memory plan copies into {dst!r}, which is not an output")
    for name, buf in arena.buffers.items():
        if buf.kind == "output" and roots[name] == name and (
                buf.index >= len(graph.outputs) or roots[graph.outputs[buf.index]] != name):
            _fail(f"tensor {name!r} is computed in output array {buf.index}, which is not its output")


def _lifetimes(graph: Graph, arena: Arena) -> dict[str, tuple[int, int]]:
    """Per storage root: the steps (positions in topological order) from its producer's through its last
    reader's; a reader of a view reads the view's root, a slice's producer and readers use its concat's block,
    and the output copies read at the very end."""
    layers = graph.layers()
    step = {layer.name: i for i, layer in enumerate(layers)}
    first, last = dict(step), dict(step)
    for layer in layers:  # a concat holding slices is live from its first slice's producer
        root = _storage(graph, arena, layer.name)
        first[root] = min(first[root], step[layer.name])
        for src in layer.inputs:
            root = _storage(graph, arena, src)
            last[root] = max(last[root], step[layer.name])
    for _, src in arena.copies:
        last[_storage(graph, arena, src)] = len(layers)
    return {name: (first[name], last[name]) for name in step if _storage(graph, arena, name) == name}


def _overlap(a: Buffer, b: Buffer) -> bool:
    return a.index < b.index + b.size and b.index < a.index + a.size


def _span(buf: Buffer) -> str:
    return f"floats {buf.index}..{buf.index + buf.size - 1}"


def _check_block(what: str, buf: Buffer, arena: Arena) -> None:
    if buf.index < 0 or buf.index % ALIGN_FLOATS:
        _fail(f"{what}: arena offset {buf.index} is not a multiple of {ALIGN_FLOATS} floats (64 bytes)")
    if buf.index + buf.size > arena.floats:
        _fail(f"{what}: {_span(buf)} lie beyond the arena's {arena.floats}")


def _check_overlaps(graph: Graph, plan: KernelPlan, arena: Arena) -> None:
    """Arena blocks are aligned and inside the arena; no two live at the same step share a float; a layer's
    scratch is what its kernel needs and shares no float with a tensor live during the layer."""
    steps = [layer.name for layer in graph.layers()] + ["the output copies"]
    blocks = []  # (tensor, buffer, first step, last step)
    for name, (first, last) in _lifetimes(graph, arena).items():
        if arena.buffers[name].kind == "arena":
            _check_block(f"tensor {name!r}", arena.buffers[name], arena)
            blocks.append((name, arena.buffers[name], first, last))

    def live(first: int, last: int) -> str:
        return f"live from {steps[first]!r} through {steps[last]!r}"

    for i, (a, abuf, afirst, alast) in enumerate(blocks):
        for b, bbuf, bfirst, blast in blocks[i + 1:]:
            if afirst <= blast and bfirst <= alast and _overlap(abuf, bbuf):
                _fail(f"tensors {a!r} ({_span(abuf)}, {live(afirst, alast)}) and {b!r} ({_span(bbuf)}, "
                      f"{live(bfirst, blast)}) overlap in the arena while both are live")

    need = {name: c.scratch_floats for name, c in plan.choices.items() if c.scratch_floats}
    for name in arena.scratch:
        if name not in need:
            _fail(f"layer {name!r} has a scratch block, but its kernel needs none")
    for name, floats in need.items():
        block = arena.scratch.get(name)
        if block is None or block.kind != "arena" or block.size < floats:
            _fail(f"layer {name!r}: its kernel needs {floats} floats of arena scratch, the plan gives {block}")
        _check_block(f"the scratch of layer {name!r}", block, arena)
        step = steps.index(name)
        for tensor, buf, first, last in blocks:
            if first <= step <= last and _overlap(block, buf):
                _fail(f"layer {name!r}: its scratch ({_span(block)}) overlaps tensor {tensor!r} ({_span(buf)}), "
                      f"{live(first, last)}")


# ---------------------------------------------------------------- the lowered model
def verify_lowered(graph: Graph, plan: KernelPlan, arena: Arena, lowered: LoweredModel) -> None:
    """One kernel instance and one call per computed layer, in topological order, each with its chosen kernel and
    template; each call's pointers are the memory plan's buffers of the layer's inputs and output, then its
    scratch; weight offsets are 64-byte aligned; the copies, sample tensors and metadata are the plan's."""
    if lowered.arena != arena:
        _fail("the lowered model carries another memory plan than the one it was lowered with")
    if dict(lowered.layouts) != dict(plan.layouts):
        _fail(f"the lowered model's layouts {lowered.layouts} are not the plan's {dict(plan.layouts)}")
    blob = lowered.weights
    for (layer, suffix), offset in blob.offsets.items():
        if offset % ALIGN_FLOATS or not 0 <= offset <= blob.floats:
            _fail(f"layer {layer!r}: weights {suffix!r} at float {offset} of {blob.floats}, not 64-byte aligned inside")
    if len(set(blob.offsets.values())) != len(blob.offsets) and blob.floats:
        _fail("two weight arrays start at the same offset")
    _check_calls(graph, plan, arena, lowered)
    _check_sample_io(graph, arena, lowered)


def _pointer(graph: Graph, arena: Arena, lowered: LoweredModel, tensor: str) -> Pointer:
    """What a kernel argument for `tensor` must be: its arena offset, the sample's x<i> / y<i>, or a constant's
    array in the weights."""
    buf = arena.buffers[tensor]
    if buf.kind == "arena":
        return Pointer("arena", buf.index)
    if buf.kind in ("input", "output"):
        return Pointer(f"{'x' if buf.kind == 'input' else 'y'}{buf.index}")
    root = _root(graph, tensor)
    offsets = [offset for (layer, _), offset in lowered.weights.offsets.items() if layer == root]
    if len(offsets) != 1:
        _fail(f"constant {root!r} has {len(offsets)} arrays in the weights, expected one")
    return Pointer("convc_weights", offsets[0])


def _check_calls(graph: Graph, plan: KernelPlan, arena: Arena, lowered: LoweredModel) -> None:
    computed = [layer for layer in graph.layers() if layer.name in plan.choices]
    names = [layer.name for layer in computed]
    if len(lowered.calls) != len(names):
        _fail(f"{len(lowered.calls)} calls for {len(names)} computed layers")
    functions = {k.context.get("fn"): k for k in lowered.kernels}
    if len(functions) != len(lowered.kernels):
        _fail(f"{len(lowered.kernels)} kernel functions under {len(functions)} names")
    firsts = [k.layer for k in lowered.kernels if not k.context.get("rows_form")]  # batched forms: the tail's
    if firsts != [n for n in names if n in firsts]:
        _fail(f"kernel functions {firsts} are not in the topological order of their first layers")
    for layer, call in zip(computed, lowered.calls):
        choice = plan.choices[layer.name]
        instance = functions.get(call.fn)
        if instance is None:
            _fail(f"{layer.where}: call of {call.fn!r}, which no kernel function defines")
        if (instance.kernel, instance.template) != (choice.kernel, choice.template):
            _fail(f"{layer.where}: lowered as {instance.kernel!r} ({instance.template}); the plan chose "
                  f"{choice.kernel!r} ({choice.template})")
        expected = [_pointer(graph, arena, lowered, t) for t in layer.inputs + (layer.name,)]
        if graph.repeats(layer.name) > 1:  # called once per index of the leading axis: each step one sample
            expected = [dataclasses.replace(ptr, step=_floats(graph.shape(t)[1:]))
                        for ptr, t in zip(expected, layer.inputs + (layer.name,))]
            if (call.repeat, call.repeated) != (graph.repeats(layer.name), True):
                _fail(f"{layer.where}: call {call.fn} repeats {call.repeat} times; it runs on each of the "
                      f"{graph.repeats(layer.name)} samples of its leading axis")
        # The constant arrays the function reads are its arguments: this layer's own, from the blob.
        suffixes = [w.removeprefix("w_") for w in instance.context.get("weights", [])]
        expected += [Pointer("convc_weights", lowered.weights.offsets.get((layer.name, s), -1)) for s in suffixes]
        if choice.scratch_floats:
            expected.append(Pointer("arena", arena.scratch[layer.name].index))
        if list(call.args) != expected:
            labels = ([f"input {i} ({t!r})" for i, t in enumerate(layer.inputs)] + ["output"]
                      + [f"weights {s!r}" for s in suffixes] + ["scratch"])
            wrong = next((i for i, (a, b) in enumerate(zip(call.args, expected)) if a != b), None)
            what = (f"{labels[wrong]} is {call.args[wrong]}, the memory plan and the blob say {expected[wrong]}"
                    if wrong is not None else f"{len(call.args)} arguments, expected {len(expected)}")
            _fail(f"{layer.where}: call {call.fn}: {what}")
    slots = [call.profile_slot for call in lowered.calls]
    profiled = lowered.metadata.get("profile_layers")
    if (any(s is not None for s in slots) or profiled is not None) and (
            slots != list(range(len(slots))) or profiled != names):
        _fail(f"profile slots {slots} for layers {profiled}; expected 0..{len(slots) - 1} for {names}")


def _check_sample_io(graph: Graph, arena: Arena, lowered: LoweredModel) -> None:
    """The output copies, the per-sample input and output pointers and the metadata the runtime reads."""
    expected_copies = [Copy(Pointer(f"y{graph.outputs.index(out)}"), _pointer(graph, arena, lowered, src),
                            _floats(graph.shape(out))) for out, src in arena.copies]
    if lowered.copies != expected_copies:
        _fail(f"copies {lowered.copies}; the memory plan asks for {expected_copies}")
    expected_io = ([SampleTensor(f"x{i}", i, _floats(graph.shape(n)), True) for i, n in enumerate(graph.inputs)]
                   + [SampleTensor(f"y{i}", i, _floats(graph.shape(n)), False) for i, n in enumerate(graph.outputs)])
    if lowered.sample_tensors != expected_io:
        _fail(f"sample tensors {lowered.sample_tensors}, expected {expected_io}")
    meta = lowered.metadata
    if meta.get("arena_floats") != arena.floats:
        _fail(f"metadata arena_floats {meta.get('arena_floats')}, the plan's arena has {arena.floats}")
    for what, names in (("inputs", graph.inputs), ("outputs", graph.outputs)):
        want = [{"name": n, "shape": list(graph.shape(n))} for n in names]
        if meta.get(what) != want:
            _fail(f"metadata {what} {meta.get(what)}, expected {want}")


def verify_batch_tail(graph: Graph, plan: KernelPlan, tail: BatchTail | None, arena: Arena,
                      lowered: LoweredModel) -> None:
    """The tail is the last computed layers, each reading the one before (through views), the first reading
    `source`, the last a model output nothing reads; the group area holds tail.group rows of the source and of
    every tail tensor but the last, 64-byte aligned, apart, inside group_floats; the lowered tail's calls read
    and write those rows in order (the last writes the output's rows), batched forms with n, others per row."""
    if tail is None:
        if arena.tail is not None or arena.group or arena.group_floats or lowered.tail is not None:
            _fail("no batched tail was planned, but the memory plan or the lowered model has one")
        return
    if arena.tail != tail or lowered.tail is None:
        _fail(f"the batched tail {tail.layers} is not the memory plan's ({arena.tail}) or was not lowered")
    computed = [layer.name for layer in graph.layers() if layer.name in plan.choices]
    if list(tail.layers) != computed[len(computed) - len(tail.layers):]:
        _fail(f"batched tail {tail.layers}: not the last computed layers {computed[-len(tail.layers):]}")
    last = tail.layers[-1]
    if graph.outputs.count(last) != 1 or list(graph.nx.successors(last)):
        _fail(f"batched tail: its last layer {last!r} is not a model output that nothing reads")
    reads = (tail.source, *tail.layers[:-1])
    for name, before in zip(tail.layers, reads):
        layer = graph.layer(name)
        if len(layer.inputs) != 1 or _root(graph, layer.inputs[0]) != _root(graph, before):
            _fail(f"{layer.where}: in the batched tail it must read {before!r} alone, it reads {layer.inputs}")
    rows = {name: tail.group * group_row_floats(_floats(graph.shape(name))) for name in reads}
    if set(arena.group) != set(reads):
        _fail(f"the group area holds {sorted(arena.group)}, the tail reads {sorted(reads)}")
    spans = sorted((arena.group[name], arena.group[name] + rows[name], name) for name in reads)
    for (start, end, name), after in zip(spans, spans[1:] + [(arena.group_floats, 0, "its end")]):
        if start % ALIGN_FLOATS or start < 0 or end > after[0]:
            _fail(f"group area: {name!r}'s rows at floats {start}..{end} overlap {after[2]!r} or are not aligned")
    lowered_tail = lowered.tail
    if lowered_tail.head_calls != len(lowered.calls) - len(tail.layers) or len(lowered_tail.calls) != len(tail.layers):
        _fail(f"batched tail: head of {lowered_tail.head_calls} calls and {len(lowered_tail.calls)} tail calls for "
              f"{len(lowered.calls)} calls and {len(tail.layers)} tail layers")
    functions = {k.context.get("fn"): k for k in lowered.kernels}
    output = f"y{graph.outputs.index(last)}"
    for name, before, call, sample_call in zip(tail.layers, reads, lowered_tail.calls,
                                               lowered.calls[lowered_tail.head_calls:]):
        choice = plan.choices[name]
        batched = choice.rows_template is not None
        src_step = 0 if batched else group_row_floats(_floats(graph.shape(before)))
        dst_step = 0 if batched else (_floats(graph.shape(name)) if name == last
                                      else group_row_floats(_floats(graph.shape(name))))
        dst = Pointer(output, None, dst_step) if name == last else Pointer("group", arena.group[name], dst_step)
        want = (Pointer("group", arena.group[before], src_step), dst, *sample_call.args[2:])
        instance = functions.get(call.fn)
        if call.batched != batched or instance is None or bool(instance.context.get("rows_form")) != batched:
            _fail(f"{graph.layer(name).where}: tail call {call.fn} (batched {call.batched}); its kernel "
                  f"{choice.kernel!r} {'has' if batched else 'has no'} batched form")
        if tuple(call.args) != want:
            _fail(f"{graph.layer(name).where}: tail call {call.fn} takes {call.args}, expected {want}")


# ---------------------------------------------------------------- the whole back end
def _snapshot(graph: Graph) -> Any:
    """What a pass must leave unchanged in its input graph."""
    nodes = tuple((n, d.get("layer"), d.get("shape")) for n, d in graph.nx.nodes(data=True))
    weights = tuple(sorted((k, id(v)) for k, v in graph.weights.items()))
    return graph.name, tuple(graph.inputs), tuple(graph.outputs), nodes, tuple(graph.nx.edges), weights


def verify_pipeline(graph: Graph, target: Target, opt_level: int,
                    kernels: Mapping[str, str] | None = None) -> LoweredModel:
    """optimize (each pass of the level in turn) -> select_kernels -> plan_batch_tail -> plan_memory -> lower,
    checking the graph before and after every pass (and that the pass left its input alone and kept the model's
    interface), then each stage's output. Returns the LoweredModel (render and cc are not run)."""
    verify_graph(graph)
    current = graph
    for run_pass in PIPELINES[opt_level]:
        before = _snapshot(current)
        result = run_pass(current)
        try:
            if _snapshot(current) != before:
                _fail(f"{graph.source}: the pass changed its input graph (passes are pure Graph -> Graph)")
            verify_graph(result)
            verify_interface(current, result)
        except InvariantError as e:
            raise InvariantError(f"after pass {run_pass.__name__}: {e}") from None
        current = result
    plan = select_kernels(current, target, opt_level, kernels)
    verify_kernel_plan(current, plan)
    tail = plan_batch_tail(current, plan)
    arena = plan_memory(current, plan, tail)
    verify_memory(current, plan, arena)
    lowered = lower(current, plan, arena)
    verify_lowered(current, plan, arena, lowered)
    verify_batch_tail(current, plan, tail, arena, lowered)
    return lowered
