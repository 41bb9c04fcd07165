"""Lowering: Graph + memory plan -> kernel instances (template, integers, mangled names) and the run body.

Everything the C needs is decided here, in Python: buffer offsets, weight offsets,
loop bounds and tables. Nothing from the model file reaches C except through
`c_identifier` / `c_comment`, which keep only [A-Za-z0-9_].
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import __version__
from .errors import ModelError
from .ir import Graph
from .layouts import choose_layouts
from .memory import ALIGN_FLOATS, Arena, Buffer, plan_memory
from .ops.base import fmt_shape
from .target import Target

ABI_VERSION = 2
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


@dataclass
class Kernel:
    """One generated C function: its template and everything the template reads."""
    layer: str
    template: str
    context: dict[str, Any]


@dataclass
class LoweredModel:
    name: str
    kernels: list[Kernel]
    sample_decls: list[str]  # per-sample input/output pointers inside the batch loop
    calls: list[str]  # statements of one sample's forward pass
    arena: Arena
    weights: WeightBlob
    metadata: dict[str, Any]
    layouts: dict[str, int] = field(default_factory=dict)  # channel-blocked tensors -> lanes (layouts.py)

    @property
    def metadata_bytes(self) -> bytes:
        return json.dumps(self.metadata, sort_keys=True, ensure_ascii=True).encode("ascii")


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


def _pointer(buf: Buffer, constants: list[int]) -> str:
    if buf.kind == "arena":
        return f"arena + {buf.index}"
    if buf.kind == "const":
        return f"convc_weights + {constants[buf.index]}"
    return f"{'x' if buf.kind == 'input' else 'y'}{buf.index}"


def _scratch(layer, need: int, arena: Arena) -> list[str]:
    """The kernel's scratch argument ([] when it needs none)."""
    if not need:
        return []
    block = arena.scratch.get(layer.name)
    if block is None or block.size < need:
        raise ValueError(f"{layer.where}: the memory plan has no scratch for this layer's kernel; "
                         "plan it with plan_memory(graph, opt_level) at the lowering's opt_level")
    return [f"arena + {block.index}"]


def lower(graph: Graph, arena: Arena | None = None, opt_level: int = 0, profile: bool = False,
          target: Target | None = None) -> LoweredModel:
    """profile: time each layer's call (convc_profile() in the library; see runtime.Model.profile).
    target: the machine the kernels are for (needed from opt level 2)."""
    if opt_level >= 2 and target is None:
        raise ValueError("opt level 2 chooses kernels for a target: pass target=compiler.Target.from_march(...)")
    arena = arena or plan_memory(graph, opt_level, target)
    blob = WeightBlob()
    kernels: list[Kernel] = []
    calls: list[str] = []
    # Constants first, in layer order (memory.plan_memory numbers them the same way).
    constants = [blob.add(layer.name, suffix, array) for layer in graph.layers() if layer.spec.is_constant
                 for suffix, array in layer.spec.lower_weights(layer, graph.layer_weights(layer.name)).items()]
    profiled: list[str] = []
    blocked = choose_layouts(graph, opt_level, target)
    for index, layer in enumerate(graph.layers()):
        spec = layer.spec
        if layer.op == "input" or spec.is_view or spec.is_constant:
            continue
        ins, out = graph.in_shapes(layer.name), graph.shape(layer.name)
        layouts = tuple(blocked.get(name, 0) for name in layer.inputs + (layer.name,))
        template, arrays, args = spec.lowering(layer, ins, out, graph.layer_weights(layer.name), opt_level,
                                               layouts if any(layouts) else None, target)
        offsets = {suffix: blob.add(layer.name, suffix, array) for suffix, array in arrays.items()}
        fn = c_identifier(index, layer.name)
        in_names = [f"x{i}" for i in range(len(ins))]
        formula = spec.formula(layer, ins, out)
        ins_text = ", ".join(fmt_shape(s) for s in ins)
        header = [f"layer {index} {c_name(layer.name)} ({layer.op}): "
                  f"{ins_text} -> {fmt_shape(out)}"]
        if formula:
            header.append(f"out = {formula}")
        if any(layouts):
            header.append("layout: " + ", ".join(
                f"{x} [C/{n}][H][W][{n}]" if n else f"{x} CxHxW"
                for x, n in zip([f"x{i}" for i in range(len(ins))] + ["y"], layouts)))
        context = dict(args)
        check_c_ints(layer, context)
        scratch = _scratch(layer, spec.scratch_floats(layer, ins, out, opt_level, target), arena)
        context.update(
            fn=fn, w=offsets, inputs=in_names,
            header="/* " + "\n * ".join(c_comment(h) for h in header) + " */",
            params=", ".join([f"const float *restrict {x}" for x in in_names] + ["float *restrict y"]
                             + (["float *restrict scratch"] if scratch else [])))
        kernels.append(Kernel(layer.name, template, context))
        args = [_pointer(arena.buffers[i], constants) for i in layer.inputs + (layer.name,)] + scratch
        call = f"{fn}({', '.join(args)});"
        if profile:
            call = (f"{{ const double t0 = convc_now(); {call} "
                    f"convc_layer_seconds[{len(profiled)}] += convc_now() - t0; }}")
            profiled.append(layer.name)
        calls.append(call)
    for out, src in arena.copies:
        out_buf = f"y{graph.outputs.index(out)}"
        calls.append(f"memcpy({out_buf}, {_pointer(arena.buffers[src], constants)}, "
                     f"{int(np.prod(graph.shape(out)))} * sizeof(float));")
    check_sizes(graph, arena, blob)

    decls = [f"const float *const x{i} = inputs[{i}] + b * {int(np.prod(graph.shape(n)))};"
             for i, n in enumerate(graph.inputs)]
    decls += [f"float *const y{i} = outputs[{i}] + b * {int(np.prod(graph.shape(n)))};"
              for i, n in enumerate(graph.outputs)]
    metadata = {
        "abi": ABI_VERSION,
        "convc_version": __version__,
        "name": graph.name,
        "dtype": "float32",
        "inputs": [{"name": n, "shape": list(graph.shape(n))} for n in graph.inputs],
        "outputs": [{"name": n, "shape": list(graph.shape(n))} for n in graph.outputs],
        "arena_floats": arena.floats,
    }
    if profile:
        metadata["profile_layers"] = profiled
    return LoweredModel(graph.name, kernels, decls, calls, arena, blob, metadata, blocked)
