"""Standalone C export: a Graph -> a self-contained C99 library (model.c, model.h, weights, example/).

It reuses the kernels the shared-library build renders (codegen.render_kernels) and wraps them in
templates/standalone/: a static arena instead of a caller-provided one, the weights as a const
array or a .bin file read by a loader, and a public API whose names carry a prefix so several
models link into one program.

Every opt level works; the default is the shared library's (pipeline.DEFAULT_OPT_LEVEL, 2: the fast
kernels). Their GCC vector extensions sit under `#if defined(__GNUC__)` with a portable scalar path
for other compilers (or any compiler given -DCONVC_NO_VECTOR_EXTENSIONS). Their thread pool
(templates/threads.c.j2) is compiled serial unless the user defines PREFIX_THREADS, so by default
model.c needs no pthreads, no heap and no OS. Two costs matter on microcontrollers: the register-
blocked kernels keep several KB of accumulators on the stack when the target's vector registers are
fewer or narrower than this machine's (their vector width is tuned to the machine running convc),
and the unrolled kernels are more code; opt_level=1 keeps the graph passes with the plain loops.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import __version__
from .codegen import _hex_floats, _rows, environment, render_kernels
from .ir import Graph
from .lower import c_comment, c_name, lower
from .memory import plan_memory
from .passes import optimize
from .pipeline import DEFAULT_OPT_LEVEL
from .target import Target

WEIGHTS_FILE = "weights.bin"
# "auto" writes the weights as a C array up to this many floats (1 MiB), else as weights.bin:
# hex-float literals are portable but slow to compile in the millions.
ARRAY_WEIGHTS_LIMIT = 1 << 18
WEIGHT_MODES = ("auto", "array", "file")


@dataclass(frozen=True)
class EmittedC:
    """What emit_c wrote: the folder, the C prefix, the weights mode and every file's path."""
    directory: Path
    prefix: str
    weights: str  # "array", "file" or "none" (a model without weights)
    files: tuple[Path, ...]


def c_prefix(name: str) -> str:
    """A model name as a lower-case C identifier prefix (the API is PREFIX_run, the macros PREFIX_...)."""
    prefix = re.sub(r"_+", "_", c_name(name).lower()).strip("_") or "model"
    return prefix if prefix[0].isalpha() else f"m_{prefix}"


def _shape_macros(macro: str, shape: tuple[int, ...], what: str) -> list[tuple[str, str, str]]:
    rows = [(f"{macro}_SIZE", str(int(np.prod(shape))), f"floats per sample of {what}")]
    dims = ("C", "H", "W") if len(shape) == 3 else tuple(f"DIM{i}" for i in range(len(shape)))
    rows += [(f"{macro}_{d}", str(n), "") for d, n in zip(dims, shape)]
    return rows


def emit_c(graph: Graph, directory: str | os.PathLike, *, weights: str = "auto",
           opt_level: int = DEFAULT_OPT_LEVEL, prefix: str | None = None,
           march: str | Target | None = "native") -> EmittedC:
    """Write the model as a standalone C99 library into `directory` (created if needed).

    weights: "array" (a const array in model.c), "file" (weights.bin + PREFIX_load_weights), or
    "auto" (array up to ARRAY_WEIGHTS_LIMIT floats, else file).
    opt_level: as compiler.compile (a key of compiler.passes.PIPELINES); see the module docstring
    for what level 2 costs on a microcontroller.
    prefix: the C name prefix of the API (default: from the model's name).
    march: the target the kernels are chosen and tuned for (a -march name or a compiler.Target; default the
    machine running convc). Build model.c for a CPU with that target's ISA.
    """
    if weights not in WEIGHT_MODES:
        raise ValueError(f"weights must be one of {', '.join(WEIGHT_MODES)}, got {weights!r}")
    if prefix is not None and not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,39}", prefix):
        raise ValueError(f"prefix must be a C identifier of at most 40 characters starting with a letter, "
                         f"got {prefix!r}")
    p = prefix.lower() if prefix else c_prefix(graph.name)
    P = p.upper()
    target = Target.from_march(march)
    optimized = optimize(graph, opt_level)
    lowered = lower(optimized, plan_memory(optimized, opt_level, target), opt_level, target=target)
    env = environment()
    kernels = render_kernels(lowered, env)
    blob = lowered.weights.data()
    mode = "none" if not blob.size else weights
    if mode == "auto":
        mode = "array" if blob.size <= ARRAY_WEIGHTS_LIMIT else "file"

    meta = lowered.metadata
    inputs, outputs = meta["inputs"], meta["outputs"]
    macros: list[tuple[str, str, str]] = []
    io_lines, in_info, out_info = [], [], []
    for kind, tensors, info in (("INPUT", inputs, in_info), ("OUTPUT", outputs, out_info)):
        for i, t in enumerate(tensors):
            shape = tuple(t["shape"])
            macro = f"{P}_{kind}{i}"
            what = f"{kind.lower()} {i} ({c_name(t['name'])})"
            macros += _shape_macros(macro, shape, what)
            info.append({"macro": f"{macro}_SIZE", "name": c_name(t["name"])})
            io_lines.append(c_comment(f"{what}: float32 [{', '.join(map(str, shape))}], "
                                      f"{macro}_SIZE = {int(np.prod(shape))} floats"))
    macros += [(f"{P}_INPUT_SIZE", f"{P}_INPUT0_SIZE", "the first input"),
               (f"{P}_OUTPUT_SIZE", f"{P}_OUTPUT0_SIZE", "the first output"),
               (f"{P}_NUM_INPUTS", str(len(inputs)), ""), (f"{P}_NUM_OUTPUTS", str(len(outputs)), ""),
               (f"{P}_ARENA_FLOATS", str(lowered.arena.floats), "static activation memory, in floats"),
               (f"{P}_WEIGHT_FLOATS", str(blob.size), "")]
    in_args = [f"in{i}" for i in range(len(inputs))]
    out_args = [f"out{i}" for i in range(len(outputs))]
    run_params = ", ".join([f"const float *{a}" for a in in_args] + [f"float *{a}" for a in out_args])
    run_doc = "; ".join([f"in{i} = {info['name']} ({info['macro']} floats)" for i, info in enumerate(in_info)]
                        + [f"out{i} = {info['name']} ({info['macro']} floats)" for i, info in enumerate(out_info)])

    context = dict(
        title=f"model {c_name(graph.name)}", version=__version__, p=p, P=P, io_lines=io_lines, macros=macros,
        weights_mode=mode, weights_file=WEIGHTS_FILE, weight_floats=blob.size,
        weight_floats_decl=max(blob.size, 1),
        weight_rows=_rows(_hex_floats(blob), 6) if mode == "array" else [],
        arena_floats=lowered.arena.floats, arena_floats_decl=max(lowered.arena.floats, 1),
        kernels=kernels, uses_arena=any("arena" in c for c in lowered.calls),
        # The fast kernels (opt level 2) hand their work items to templates/threads.c.j2.
        uses_threads=any("struct convc_task" in k for k in kernels), threads_static=True,
        sample_decls=lowered.sample_decls, calls=lowered.calls,
        n_inputs=len(inputs), n_outputs=len(outputs), in_args=in_args, out_args=out_args,
        run_params=run_params, run_doc=c_comment(run_doc),
        inputs=in_info, outputs=out_info,
        run_args=", ".join([f"input{i}" for i in range(len(inputs))] + [f"output{i}" for i in range(len(outputs))]),
    )
    folder = Path(directory)
    (folder / "example").mkdir(parents=True, exist_ok=True)
    written = []
    for template, target in (("model.h.j2", "model.h"), ("model.c.j2", "model.c"),
                             ("main.c.j2", "example/main.c"), ("Makefile.j2", "example/Makefile")):
        path = folder / target
        path.write_text(env.get_template(f"standalone/{template}").render(**context))
        written.append(path)
    weights_path = folder / WEIGHTS_FILE
    if mode == "file":
        weights_path.write_bytes(blob.astype("<f4").tobytes())
        written.append(weights_path)
    elif weights_path.exists():
        weights_path.unlink()  # a stale file from an earlier export would mislead
    return EmittedC(folder, p, mode, tuple(written))
