"""Per-layer debugging: compile a build that exposes every layer's tensor and compare each with the interpreter.

The debug build runs the kernels users run: the graph is optimized at the requested opt level and every
layer gets the kernel, parameters and layouts that select_kernels chooses for the real build (the same
target, the same forced kernels). It then lowers a copy of that graph whose outputs are all its non-input
layers, so every tensor gets its own output buffer (the arena then holds none of them: this localizes a
wrong kernel, not an arena overlap; for those use `convc check --sanitize`). A tensor the real build
stores channel-blocked ([C/L][H][W][L]) is written so to its buffer and turned back into N×C×H×W for the
comparison. Rows come in topological order, each naming the kernel it checked; the first one beyond
tolerance is where the compiled model starts to diverge.

A layer passes when its largest error is within atol + rtol * (the largest |value| of the reference
tensor): intermediate tensors of deep random networks grow large, and float32 rounding of a sum
that cancels to near zero would fail an elementwise relative test without anything being wrong.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

import runtime
from runtime.build import build_library, compile_flags

from .codegen import render
from .interpret import interpret
from .ir import Graph
from .kernels.select import select_kernels
from .lower import lower
from .memory import plan_memory
from .ops.base import fmt_shape
from .passes import optimize
from .pipeline import DEFAULT_OPT_LEVEL, load
from .target import Target

RTOL, ATOL = 1e-4, 1e-5  # float32 kernels vs. the float64 interpreter (`convc check` uses these too)


@dataclass(frozen=True)
class LayerError:
    name: str
    sources: tuple[str, ...]  # the model layers it computes (conv1, bn1, relu_2 for a fused layer)
    op: str
    shape: tuple[int, ...]
    kernel: str  # the kernel the row checked ("" for views and outputs compared with the unoptimized graph)
    layout: str  # "C/L" when the kernel stores it channel-blocked, else ""
    max_abs: float
    max_rel: float  # max_abs / max |reference| over the tensor (elementwise ratios explode near zeros)
    ok: bool  # max_abs <= atol + rtol * max |reference|


@dataclass(frozen=True)
class LayerReport:
    model: str
    opt_level: int
    target: str  # the Target's name the kernels were chosen for
    batch: int
    rows: list[LayerError]
    rtol: float
    atol: float
    # With optimization passes: the model's outputs vs. the interpreter on the unoptimized graph.
    outputs_vs_source: list[LayerError] = field(default_factory=list)

    @property
    def first_divergent(self) -> LayerError | None:
        return next((r for r in self.rows if not r.ok), None)

    @property
    def ok(self) -> bool:
        return self.first_divergent is None and all(r.ok for r in self.outputs_vs_source)

    def format(self, color: bool = False) -> str:
        head = ("", "layer", "op", "kernel", "shape", "max abs err", "rel to max", "")
        first = self.first_divergent
        body = [(">>" if r is first else "", "+".join(r.sources), r.op, r.kernel + (f" /{r.layout}" if r.layout else ""),
                 fmt_shape(r.shape), f"{r.max_abs:.3g}", f"{r.max_rel:.3g}", "OK" if r.ok else "DIVERGES")
                for r in self.rows]
        widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
        right = {5, 6}

        def line(cells):
            return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                             for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
        out = [f"model {self.model}: every layer vs. the interpreter ({self.target}, opt level {self.opt_level}, "
               f"batch {self.batch}, tolerance {self.atol:g} + {self.rtol:g} x max |reference|)", line(head),
               line(["-" * w for w in widths])]
        for row, cells in zip(self.rows, body):
            text = line(cells)
            if color and row is first:
                text = f"\x1b[1;31m{text}\x1b[0m"
            elif color and not row.ok:
                text = f"\x1b[33m{text}\x1b[0m"
            out.append(text)
        for r in self.outputs_vs_source:
            out.append(f"output {r.name} vs. the unoptimized graph: max abs err {r.max_abs:.3g}, "
                       f"rel to max {r.max_rel:.3g}: {'OK' if r.ok else 'DIVERGES'}")
        if first is None and not self.ok:
            out.append("every layer agrees with the optimized graph, but the outputs differ from the unoptimized "
                       f"graph: an optimization pass of opt level {self.opt_level} changed the result")
        elif first is None:
            out.append(f"all {len(self.rows)} layers agree")
        else:
            bad = sum(not r.ok for r in self.rows)
            kernel = f", kernel {first.kernel}" if first.kernel else ""
            out.append(f"first divergent layer: {' + '.join(first.sources)} ({first.op}{kernel}); {bad} of "
                       f"{len(self.rows)} layers beyond tolerance (the later ones may only inherit its error)")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.format()


def with_all_outputs(graph: Graph) -> Graph:
    """A copy of `graph` whose outputs are every non-input layer, in topological order."""
    debug = graph.copy()
    debug.outputs = [layer.name for layer in graph.layers() if layer.op != "input"]
    return debug


def unblock(array: np.ndarray, lanes: int) -> np.ndarray:
    """A batch of channel-blocked tensors [N][C/L][H][W][L] (as the buffer holds them) as N×C×H×W."""
    n, c, h, w = array.shape
    return array.reshape(n, c // lanes, h, w, lanes).transpose(0, 1, 4, 2, 3).reshape(n, c, h, w)


def check_layers(model: Graph | str | os.PathLike | dict[str, Any], *, batch: int = 2, seed: int = 0,
                 opt_level: int = DEFAULT_OPT_LEVEL, march: "str | Target | None" = "native",
                 cflags: tuple[str, ...] = (), cc: str | None = None, cache_dir: str | os.PathLike | None = None,
                 kernels: Mapping[str, str] | None = None, transform_source: Callable[[str], str] | None = None,
                 rtol: float = RTOL, atol: float = ATOL) -> LayerReport:
    """Run the debug build of `model` on a random batch and compare every layer with the interpreter.

    The passes of `opt_level` run first and every layer gets the kernel the build at that level, for the target
    `march` (and the forced `kernels`), gives it, so the rows are the layers and kernels users run.
    transform_source: applied to the generated C before it is built (tests inject bugs through it).
    """
    source_graph = load(model)
    graph = optimize(source_graph, opt_level)
    target = Target.from_march(march, cc)
    plan = select_kernels(graph, target, opt_level, kernels)  # the real build's choices
    debug = with_all_outputs(graph)
    source = render(lower(debug, plan, plan_memory(debug, plan)))
    code = transform_source(source.code) if transform_source else source.code
    result = build_library(code, source.files, cc=cc, flags=compile_flags(march=target.march, extra=tuple(cflags)),
                           cache_dir=cache_dir, open_library=runtime.load)
    compiled = result.opened
    rng = np.random.default_rng(seed)
    lead = (batch,) if graph.batched else ()  # a whole-tensor model takes exactly its shapes
    inputs = {n: rng.standard_normal((*lead, *graph.shape(n))).astype(np.float32) for n in graph.inputs}
    got = compiled.run(inputs)
    got = {name: unblock(y, plan.layouts[name]) if name in plan.layouts else y for name, y in got.items()}
    ref = interpret(graph, inputs, all_layers=True, dtype=np.float64)

    def compare(name: str, reference: np.ndarray, layer_graph: Graph, checked: bool = True) -> LayerError:
        err = np.abs(got[name].astype(np.float64) - reference)
        scale = float(np.max(np.abs(reference)))
        max_abs = float(np.max(err))
        ok = bool(max_abs <= atol + rtol * scale)  # NaN compares False: a NaN is a divergence
        layer = layer_graph.layer(name)
        kernel = plan[name].kernel if checked and name in plan else ""
        layout = f"C/{plan.layouts[name]}" if checked and name in plan.layouts else ""
        return LayerError(name, layer.sources, layer.op, layer_graph.shape(name), kernel, layout, max_abs,
                          max_abs / max(scale, 1e-30), ok)

    rows = [compare(name, ref[name], graph) for name in debug.outputs]
    vs_source = []
    if graph is not source_graph:  # passes ran: they must not change what the model computes
        source_ref = interpret(source_graph, inputs, dtype=np.float64)
        vs_source = [compare(name, source_ref[name], source_graph, checked=False)
                     for name in source_graph.outputs if name in got]
    return LayerReport(graph.name, opt_level, target.name, batch, rows, rtol, atol, vs_source)
