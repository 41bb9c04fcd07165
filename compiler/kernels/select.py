"""select_kernels: the stage that chooses every layer's kernel, once, for a Target and an opt level.

For each layer that computes something (not the input, a view or a constant) it makes a frozen
`KernelChoice`: the kernel, the record of integers its template renders, the layouts it reads and writes,
the arena scratch it needs, and why it was chosen. Memory planning, lowering and the tools that show the
choice (`convc summary --kernels`, `bench --profile`, `check --layers`) read these records; nothing after
this stage chooses again.

The choice, per layer:
1. a kernel the caller forces (`kernels={"conv3": "direct"}`, or `"*"` for every layer it can compute);
2. else the first kernel that computes the op, in order of priority, that can take the layer and wants it
   (its cost rule); `plain` takes the rest;
3. channel-blocked layouts from what the chosen kernels can read and write (compiler/kernels/layouts.py);
4. a kernel whose layouts call for another hands the layer on (a 1×1 conv between blocked tensors to the
   direct kernel; a depthwise conv whose C×H×W plane would not fit the stack to the plain one).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from ..errors import ModelError
from ..ir import Graph, Layer
from ..target import Target
from . import KERNELS, Kernel, kernels_for
from .layouts import choose_layouts

EVERY_LAYER = "*"


@dataclass(frozen=True)
class KernelChoice:
    """One layer's kernel, as chosen by select_kernels."""
    layer: str
    sources: tuple[str, ...]  # the model layers it computes (conv1, bn1, relu_2 for a fused layer)
    op: str
    shape: tuple[int, ...]  # its output, per sample
    kernel: str  # a name in compiler.kernels.KERNELS
    template: str
    params: Any = field(repr=False)  # the frozen record its template renders
    layouts: tuple[int, ...]  # per input, then the output: 0 for C×H×W, L for channel-blocked [C/L][H][W][L]
    scratch_floats: int
    reason: str  # why this kernel: "forced", or its rule
    rows_template: str | None = None  # its batched form's template (the batched tail), None: it has none

    @property
    def uses_thread_pool(self) -> bool:
        return KERNELS[self.kernel].uses_thread_pool(self.params)

    def to_dict(self) -> dict:
        return {"layer": self.layer, "sources": list(self.sources), "op": self.op, "shape": list(self.shape),
                "kernel": self.kernel, "layouts": [layout_name(n) for n in self.layouts],
                "scratch_floats": self.scratch_floats, "reason": self.reason}


def layout_name(lanes: int) -> str:
    return f"C/{lanes}" if lanes else "CxHxW"


@dataclass(frozen=True)
class KernelPlan:
    """Every computed layer's KernelChoice, and the channel-blocked tensors (name -> lanes)."""
    target: Target
    opt_level: int
    choices: Mapping[str, KernelChoice]
    layouts: Mapping[str, int]

    def __getitem__(self, layer: str) -> KernelChoice:
        return self.choices[layer]

    def __contains__(self, layer: str) -> bool:
        return layer in self.choices

    def to_dict(self) -> dict:
        return {"target": self.target.describe(), "opt_level": self.opt_level,
                "layers": [c.to_dict() for c in self.choices.values()]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    def __str__(self) -> str:
        """A table: per layer its kernel, its tensors' layouts where any is channel-blocked (inputs -> output),
        its scratch floats and why it got the kernel."""
        head = ("layer", "op", "kernel", "blocked layouts", "scratch", "why")
        body = [(" + ".join(c.sources), c.op, c.kernel,
                 f"{', '.join(layout_name(n) for n in c.layouts[:-1])} -> {layout_name(c.layouts[-1])}"
                 if any(c.layouts) else "",
                 f"{c.scratch_floats:,}" if c.scratch_floats else "", c.reason) for c in self.choices.values()]
        widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]

        def line(cells):
            return "  ".join(c.rjust(w) if i == 4 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
        out = [f"kernels for {self.target.describe()}, opt level {self.opt_level}", line(head),
               line(["-" * w for w in widths])]
        return "\n".join(out + [line(b) for b in body])


def computes(layer: Layer) -> bool:
    """Whether the layer has a kernel (the input, views and constants have none)."""
    return layer.op != "input" and not layer.spec.is_view and not layer.spec.is_constant


def _forced_kernels(graph: Graph, forced: Mapping[str, str], target: Target, opt_level: int) -> dict[str, Kernel]:
    """Layer name -> the kernel the caller forces, checked: the layer exists, the kernel exists and computes it."""
    for name, kernel in forced.items():
        if kernel not in KERNELS:
            raise ModelError(f"{graph.source}: kernels[{name!r}] = {kernel!r} is not a kernel; known: "
                             f"{', '.join(sorted(KERNELS))}")
        if KERNELS[kernel].opt_level > opt_level:
            raise ModelError(f"{graph.source}: kernel {kernel!r} is used from opt level {KERNELS[kernel].opt_level}; "
                             f"this build is at opt level {opt_level}")
        if name != EVERY_LAYER and name not in graph.nx.nodes:
            merged = {m: layer.name for layer in graph.layers() for m in layer.merged}
            if name not in merged:
                raise ModelError(f"{graph.source}: kernels[{name!r}]: the optimized model has no layer {name!r}")
    out: dict[str, Kernel] = {}
    for layer in graph.layers():
        if not computes(layer):
            continue
        names = [n for n in (layer.name, *layer.merged) if n in forced]
        if names:
            kernel = KERNELS[forced[names[0]]]
            if kernel.ops and layer.op not in kernel.ops:
                raise ModelError(f"{layer.where}: kernel {kernel.name!r} computes {', '.join(kernel.ops)}, not "
                                 f"{layer.op}")
            out[layer.name] = kernel
        elif EVERY_LAYER in forced:
            kernel = KERNELS[forced[EVERY_LAYER]]
            if (not kernel.ops or layer.op in kernel.ops) and kernel.unsuitable(
                    layer, graph.in_shapes(layer.name), graph.out_shape(layer.name), target) is None:
                out[layer.name] = kernel
    return out


def _first_choice(layer: Layer, ins, out, target: Target, opt_level: int) -> tuple[Kernel, str]:
    for kernel in kernels_for(layer.op):
        if kernel.opt_level > opt_level or kernel.unsuitable(layer, ins, out, target) is not None:
            continue
        reason = kernel.wanted(layer, ins, out, target)
        if reason is not None:
            return kernel, reason
    raise AssertionError(f"{layer.where}: no kernel computes it")  # plain computes every op with a template


def select_kernels(graph: Graph, target: Target, opt_level: int = 2,
                   kernels: Mapping[str, str] | None = None) -> KernelPlan:
    """Every computed layer's kernel for `target` at `opt_level`.

    kernels: layer name (or "*": every layer the kernel can take) -> kernel name, to force a choice for
    debugging and benchmarking; a forced kernel that cannot take its layer is an error naming why.
    """
    forced = _forced_kernels(graph, kernels or {}, target, opt_level)
    first: dict[str, tuple[Kernel, str]] = {}
    for layer in graph.layers():
        if not computes(layer):
            continue
        ins, out = graph.in_shapes(layer.name), graph.out_shape(layer.name)
        if layer.name in forced:
            kernel = forced[layer.name]
            why_not = kernel.unsuitable(layer, ins, out, target)
            if why_not is not None:
                raise ModelError(f"{layer.where}: the forced kernel {kernel.name!r} cannot compute this layer: "
                                 f"{why_not}")
            first[layer.name] = kernel, "forced"
        else:
            first[layer.name] = _first_choice(layer, ins, out, target, opt_level)

    io = {}
    if opt_level >= 2:
        io = {name: kernel.blocked_io(graph.layer(name), graph.in_shapes(name), graph.out_shape(name), target)
              for name, (kernel, _) in first.items()}
    layouts = choose_layouts(graph, io, target.lanes)

    choices = {}
    for name, (kernel, reason) in first.items():
        layer = graph.layer(name)
        ins, out = graph.in_shapes(name), graph.out_shape(name)
        lay = tuple(layouts.get(n, 0) for n in layer.inputs + (name,))
        handed = kernel.refine(layer, ins, out, target, lay)
        if handed is not None:
            if name in forced:
                raise ModelError(f"{layer.where}: the forced kernel {kernel.name!r} cannot compute this layer: "
                                 f"{handed[1]}")
            kernel, reason = handed
        params = kernel.params(layer, ins, out, target, lay)
        choices[name] = KernelChoice(name, layer.sources, layer.op, tuple(out), kernel.name,
                                     kernel.template_for(layer, params), params, lay, kernel.scratch_floats(params),
                                     reason, kernel.rows_template_for(layer, params))
    return KernelPlan(target, opt_level, MappingProxyType(choices), MappingProxyType(dict(layouts)))
