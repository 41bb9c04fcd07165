"""Lowering: Graph + memory plan -> kernel instances (template, integers, mangled names) and the run body.

Everything the C needs is decided here, in Python: buffer offsets, weight offsets,
loop bounds and tables. Nothing from the model file reaches C except through
`c_identifier` / `c_comment`, which keep only [A-Za-z0-9_].
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import __version__
from .errors import ModelError
from .ir import Graph
from .kernels import KERNELS
from .kernels.select import KernelPlan
from .memory import ALIGN_FLOATS, Arena, Buffer, computed_in_place, group_row_floats, plan_memory
from .ops.base import fmt_shape

ABI_VERSION = 3  # 3: convc_group_floats() and the group area after the arena slots
MAX_KERNEL_ARRAYS = 4  # constant arrays one kernel reads: struct convc_task's w[] (templates/threads.c.j2)
INDEX_LIMIT = 2**31 - 1  # kernels index with C int


def c_name(name: str) -> str:
    """A name from a model file as it may appear in C (comments, identifiers): [A-Za-z0-9_], at most 40."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)[:40]


def c_identifier(index: int, name: str, prefix: str = "L") -> str:
    """A C identifier that is unique by `index` and readable by `name`."""
    return f"{prefix}{index}_{c_name(name)}"


def c_comment(text: str) -> str:
    """Text safe inside /* */: ASCII letters, digits and a few symbols only (no '*/', no trigraphs, no newlines)."""
    text = (text.replace("−", "-").replace("·", "*").replace("×", "x").replace("⌊", "floor(").replace("⌋", ")")
            .replace("⌈", "ceil(").replace("⌉", ")"))
    text = re.sub(r"[^A-Za-z0-9_ .,:;=+\-()\[\]<>*/]", "_", text)
    return text.replace("*/", "* /").replace("/*", "/ *")


@dataclass
class WeightBlob:
    """All constant arrays of the model, packed as float32 with 64-byte aligned offsets."""
    offsets: dict[tuple[str, str], int] = field(default_factory=dict)
    parts: list[np.ndarray] = field(default_factory=list)
    floats: int = 0

    def add(self, layer: str, suffix: str, array: np.ndarray) -> int:
        data = np.ascontiguousarray(array, dtype=np.float32).ravel()
        pad = -self.floats % ALIGN_FLOATS
        if pad:
            self.parts.append(np.zeros(pad, np.float32))
        offset = self.floats + pad
        self.parts.append(data)
        self.offsets[(layer, suffix)] = offset
        self.floats = offset + data.size
        return offset

    def data(self) -> np.ndarray:
        return np.concatenate(self.parts).astype("<f4", copy=False) if self.parts else np.zeros(0, "<f4")


@dataclass(frozen=True)
class Pointer:
    """A kernel argument: `base` (arena, convc_weights, or the sample's input x<i> / output y<i>) plus `offset`
    floats (None for the caller's arrays, which the kernel reads from their start); `step`: floats it moves on
    each repetition of a repeated call (0: it stays)."""
    base: str
    offset: int | None = None
    step: int = 0


@dataclass(frozen=True)
class Call:
    """One kernel call of a sample's forward pass; `profile_slot`: its index among the timed layers.
    repeat > 1 (repeated): a per-sample op in a whole-tensor model, called once per index of the leading axis."""
    fn: str
    args: tuple[Pointer, ...]
    profile_slot: int | None = None
    repeat: int = 1
    repeated: bool = False


@dataclass(frozen=True)
class Copy:
    """An output that is another tensor's storage (a view of the input, a constant, a second name): copied."""
    dst: Pointer
    src: Pointer
    floats: int


@dataclass(frozen=True)
class RowsCall:
    """A call of the batched tail over rows 0..n-1 of a group: a kernel's batched form `fn(n, ...)`, or (batched
    False) its per-sample function once per row, each pointer moved by its `step` floats per row."""
    fn: str
    args: tuple[Pointer, ...]
    batched: bool


@dataclass(frozen=True)
class LoweredTail:
    """The batched tail (compiler/batching.py) as the C runs it: the head (the first `head_calls` of the
    model's calls, then its copies) runs per sample and copies `source` (`source_floats`, per sample) to its row
    in the group area (rows from `source_rows`, `source_stride` apart); `calls` then run once per group of at
    most `group` samples. `output`: the y<i> the last call writes; `head_tensors`: the sample tensors the head
    reads or writes."""
    layers: tuple[str, ...]
    group: int
    floats: int
    source: Pointer
    source_floats: int
    source_rows: int
    source_stride: int  # floats from one row of the source to the next
    head_calls: int
    head_tensors: tuple["SampleTensor", ...]
    output: "SampleTensor"
    calls: tuple[RowsCall, ...]


@dataclass(frozen=True)
class SampleTensor:
    """A model input or output: `name` (x<i> / y<i>) points at sample b of the caller's array `index`."""
    name: str
    index: int
    floats: int
    is_input: bool


@dataclass
class KernelInstance:
    """One generated C function: its layer, template and everything the template reads."""
    layer: str
    kernel: str
    template: str
    context: dict[str, Any]
    uses_thread_pool: bool


@dataclass
class LoweredModel:
    name: str
    kernels: list[KernelInstance]
    sample_tensors: list[SampleTensor]  # per-sample input/output pointers inside the batch loop
    calls: list[Call]  # one sample's forward pass, in order
    copies: list[Copy]  # then the outputs that are copies
    arena: Arena
    weights: WeightBlob
    metadata: dict[str, Any]
    layouts: dict[str, int] = field(default_factory=dict)  # channel-blocked tensors -> lanes (kernels/layouts.py)
    tail: LoweredTail | None = None  # run once per group of samples when a batch has more than one

    @property
    def metadata_bytes(self) -> bytes:
        return json.dumps(self.metadata, sort_keys=True, ensure_ascii=True).encode("ascii")

    @property
    def uses_arena(self) -> bool:
        return any(p.base == "arena" for c in self.calls for p in c.args) or any(
            p.base == "arena" for c in self.copies for p in (c.dst, c.src))

    @property
    def uses_thread_pool(self) -> bool:
        return any(k.uses_thread_pool for k in self.kernels)


def check_sizes(graph: Graph, arena: Arena, weights: WeightBlob) -> None:
    """Refuse models whose per-sample indices would overflow a C int."""
    for layer in graph.layers():
        n = int(np.prod(graph.shape(layer.name), dtype=np.int64))
        if n > INDEX_LIMIT:
            raise ModelError(f"{layer.where}: output has {n} values per sample; convc supports at most {INDEX_LIMIT}")
    for what, n in (("arena", arena.floats), ("weights", weights.floats)):
        if n > INDEX_LIMIT:
            raise ModelError(f"{graph.source}: the {what} needs {n} floats; convc supports at most {INDEX_LIMIT}")


def check_c_ints(layer, context: dict[str, Any]) -> None:
    """Every integer a template receives fits a C int, so no kernel's literal or index product can overflow."""
    def ints(v):
        if isinstance(v, (bool, np.bool_)):
            return []
        if isinstance(v, (int, np.integer)):
            return [int(v)]
        if isinstance(v, (list, tuple)):
            return [i for x in v for i in ints(x)]
        if isinstance(v, dict):
            return [i for x in v.values() for i in ints(x)]
        return []
    for key, value in context.items():
        big = [i for i in ints(value) if abs(i) > INDEX_LIMIT]
        if big:
            raise ModelError(f"{layer.where}: kernel parameter {key} = {big[0]} does not fit a C int; "
                             f"convc supports at most {INDEX_LIMIT}")


def _pointer(buf: Buffer, constants: list[int]) -> Pointer:
    if buf.kind == "arena":
        return Pointer("arena", buf.index)
    if buf.kind == "const":
        return Pointer("convc_weights", constants[buf.index])
    return Pointer(f"{'x' if buf.kind == 'input' else 'y'}{buf.index}")


def _scratch(layer, need: int, arena: Arena) -> list[Pointer]:
    """The kernel's scratch argument ([] when it needs none)."""
    if not need:
        return []
    block = arena.scratch.get(layer.name)
    if block is None or block.size < need:
        raise ValueError(f"{layer.where}: the memory plan has no scratch for this layer's kernel; "
                         "plan it with plan_memory(graph, kernels) from the same kernel plan")
    return [Pointer("arena", block.index)]


def params_context(params: Any) -> dict[str, Any]:
    """A kernel's template record as template variables (a plain kernel's is a mapping already)."""
    if dataclasses.is_dataclass(params):
        return {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}
    return dict(params)


def header_lines(graph: Graph, index: int, layer, layouts: tuple[int, ...]) -> tuple[str, ...]:
    """The kernel's comment: the layer with the layers merged into it (conv1 + bn1 + relu_2), shapes, formula,
    layouts."""
    ins, out = graph.in_shapes(layer.name), graph.out_shape(layer.name)
    lines = [f"layer {index} {' + '.join(c_name(n) for n in layer.sources)} ({layer.op}): "
             f"{', '.join(fmt_shape(s) for s in ins)} -> {fmt_shape(out)}"]
    formula = layer.spec.formula(layer, ins, out)
    if formula:
        lines.append(f"out = {formula}")
    if any(layouts):
        lines.append("layout: " + ", ".join(
            f"{x} [C/{n}][H][W][{n}]" if n else f"{x} CxHxW"
            for x, n in zip([f"x{i}" for i in range(len(ins))] + ["y"], layouts)))
    return tuple(c_comment(h) for h in lines)


def lower(graph: Graph, kernels: KernelPlan, arena: Arena | None = None, profile: bool = False) -> LoweredModel:
    """Every computed layer as its chosen kernel (compiler/kernels/select.py) over the memory plan.
    profile: time each layer's call (convc_profile() in the library; see runtime.Model.profile)."""
    arena = arena or plan_memory(graph, kernels)
    blob = WeightBlob()
    instances: list[KernelInstance] = []
    calls: list[Call] = []
    # Constants first, in layer order (memory.plan_memory numbers them the same way).
    constants = [blob.add(layer.name, suffix, array) for layer in graph.layers() if layer.spec.is_constant
                 for suffix, array in layer.spec.lower_weights(layer, graph.layer_weights(layer.name)).items()]
    profiled: list[str] = []
    shared: dict[tuple, KernelInstance] = {}  # a kernel configuration -> its one function
    contexts: dict[str, tuple[int, dict]] = {}  # per layer: its index and its kernel's configuration
    for index, layer in enumerate(graph.layers()):
        if layer.name not in kernels:
            continue
        choice = kernels[layer.name]
        arrays = KERNELS[choice.kernel].arrays(layer, graph.layer_weights(layer.name), choice.params)
        if len(arrays) > MAX_KERNEL_ARRAYS:
            raise ValueError(f"{layer.where}: its kernel reads {len(arrays)} constant arrays; at most "
                             f"{MAX_KERNEL_ARRAYS} fit the thread pool's task (templates/threads.c.j2)")
        offsets = {suffix: blob.add(layer.name, suffix, array) for suffix, array in arrays.items()}
        context = params_context(choice.params)
        if "in_place" in context:  # a kernel that copies nothing for inputs computed in place (concat)
            context["in_place"] = [computed_in_place(arena.slices, layer.name, src, offset)
                                   for src, (_, offset) in zip(layer.inputs, context["parts"])]
            context["aliased"] = any(context["in_place"])  # an input's pointer may equal the output's
        check_c_ints(layer, context)
        scratch = _scratch(layer, choice.scratch_floats, arena)
        context.update(inputs=[f"x{i}" for i in range(len(layer.inputs))], scratch=bool(scratch),
                       w={suffix: f"w_{suffix}" for suffix in arrays}, weights=[f"w_{suffix}" for suffix in arrays])
        contexts[layer.name] = index, dict(context)
        # Layers of one configuration (template and every value it renders) share one C function: the
        # constant arrays are arguments, so nothing else differs.
        key = (choice.template, repr(sorted(context.items())))
        instance = shared.get(key)
        if instance is None:
            fn = c_identifier(index, layer.primary)  # L1_conv1 for conv1 + relu_2
            context.update(fn=fn, header=header_lines(graph, index, layer, choice.layouts))
            instance = KernelInstance(layer.name, choice.kernel, choice.template, context, choice.uses_thread_pool)
            shared[key] = instance
            instances.append(instance)
        else:
            instance.context["header"] += (c_comment(f"also layer {index} {' + '.join(c_name(n) for n in layer.sources)}"),)
        args = tuple(_pointer(arena.buffers[i], constants) for i in layer.inputs + (layer.name,))
        repeat = graph.repeats(layer.name)
        if repeat > 1:  # each repetition moves every tensor argument by one sample of it
            sizes = [int(np.prod(graph.shape(i)[1:])) for i in layer.inputs + (layer.name,)]
            args = tuple(dataclasses.replace(p, step=n) for p, n in zip(args, sizes))
        args += tuple(Pointer("convc_weights", offsets[suffix]) for suffix in arrays) + tuple(scratch)
        calls.append(Call(instance.context["fn"], args, len(profiled) if profile else None, repeat, repeat > 1))
        if profile:
            profiled.append(layer.name)
    copies = [Copy(Pointer(f"y{graph.outputs.index(out)}"), _pointer(arena.buffers[src], constants),
                   int(np.prod(graph.shape(out)))) for out, src in arena.copies]
    check_sizes(graph, arena, blob)

    sample_tensors = [SampleTensor(f"x{i}", i, int(np.prod(graph.shape(n))), True) for i, n in enumerate(graph.inputs)]
    sample_tensors += [SampleTensor(f"y{i}", i, int(np.prod(graph.shape(n))), False)
                       for i, n in enumerate(graph.outputs)]
    tail = None
    if arena.tail is not None:
        if profile:
            raise ValueError("a profiling build runs samples one after another: plan its memory without a tail")
        tail = _lower_tail(graph, kernels, arena, calls, copies, sample_tensors, contexts, shared, instances)
    metadata = {
        "abi": ABI_VERSION,
        "convc_version": __version__,
        "name": graph.name,
        "dtype": "float32",
        "inputs": [{"name": n, "shape": list(graph.shape(n))} for n in graph.inputs],
        "outputs": [{"name": n, "shape": list(graph.shape(n))} for n in graph.outputs],
        "arena_floats": arena.floats,
        "batched": graph.batched,
    }
    if profile:
        metadata["profile_layers"] = profiled
    return LoweredModel(graph.name, instances, sample_tensors, calls, copies, arena, blob, metadata,
                        dict(kernels.layouts), tail)


def _lower_tail(graph: Graph, kernels: KernelPlan, arena: Arena, calls: list[Call], copies: list[Copy],
                sample_tensors: list[SampleTensor], contexts: dict[str, tuple[int, dict]],
                shared: dict[tuple, KernelInstance], instances: list[KernelInstance]) -> LoweredTail:
    """The batched tail's calls over the group area, with the batched form of each kernel that has one (a
    function of its own, shared like the others by layers of one configuration)."""
    plan = arena.tail
    head = calls[:len(calls) - len(plan.layers)]
    out = sample_tensors[len(graph.inputs) + graph.outputs.index(plan.layers[-1])]
    rows: list[RowsCall] = []
    src = arena.group[plan.source]
    for name, call in zip(plan.layers, calls[len(head):]):
        layer, choice = graph.layer(name), kernels[name]
        index, context = contexts[name]
        in_floats = int(np.prod(graph.shape(layer.inputs[0])))
        out_floats = int(np.prod(graph.shape(name)))
        last = name == plan.layers[-1]
        x_stride = group_row_floats(in_floats)
        y_stride = out_floats if last else group_row_floats(out_floats)  # the last writes the caller's rows
        dst = Pointer(out.name) if last else Pointer("group", arena.group[name])
        weights = call.args[2:]  # after the input and the output
        template = choice.rows_template
        if template is None:  # its per-sample function, once per row
            rows.append(RowsCall(call.fn, (Pointer("group", src, x_stride), dataclasses.replace(dst, step=y_stride),
                                           *weights), False))
        else:
            context = {**context, "rows_form": True, "GROUP": plan.group, "X_STRIDE": x_stride,
                       "Y_STRIDE": y_stride}
            key = (template, repr(sorted(context.items())))
            instance = shared.get(key)
            if instance is None:
                header = header_lines(graph, index, layer, choice.layouts) + (c_comment(
                    f"batched: rows 0..n-1 of [n][{in_floats}] -> [n][{out_floats}], n <= {plan.group}"),)
                context.update(fn=f"{c_identifier(index, layer.primary)}_rows", header=header)
                instance = KernelInstance(layer.name, choice.kernel, template, context, choice.uses_thread_pool)
                shared[key] = instance
                instances.append(instance)
            rows.append(RowsCall(instance.context["fn"], (Pointer("group", src), dst, *weights), True))
        src = dst.offset
    used = {p.base for c in head for p in c.args} | {p.base for c in copies for p in (c.dst, c.src)}
    source = _pointer(arena.buffers[plan.source], [])
    used.add(source.base)
    floats = int(np.prod(graph.shape(plan.source)))
    return LoweredTail(plan.layers, plan.group, arena.group_floats, source, floats, arena.group[plan.source],
                       group_row_floats(floats), len(head), tuple(t for t in sample_tensors if t.name in used), out,
                       tuple(rows))
