"""Rendering: a LoweredModel -> its C source (plus the weights blob it embeds): model.c, and for a large
model built here, units of its kernels that cc compiles in parallel beside it."""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import numpy as np

from runtime.cpu import ISA_MACROS

from . import __version__
from .lower import ABI_VERSION, LoweredModel, c_comment, c_name

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"
WEIGHTS_FILE = "weights.bin"


@dataclass
class CSource:
    """model.c, the files it needs beside it when compiled (name -> bytes) and the other translation units
    it links with (name -> C source; none for a one-file model)."""
    code: str
    files: dict[str, bytes]
    units: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class UnitKernel:
    """A kernel compiled in a unit of its own: its static body (renamed `body_fn`) and the hidden entry point
    `fn` that model.c calls with `args`."""
    fn: str
    body_fn: str
    body: str
    inputs: tuple[str, ...]
    weights: tuple[str, ...]
    scratch: bool
    args: tuple[str, ...]
    unit: str
    aliased: bool = False  # its pointer arguments may be equal (no restrict)
    rows: bool = False  # a batched form: its first argument is the number of rows n


KERNELS_PER_UNIT = 8  # fewer kernel functions than this per unit: a separate cc process does not pay off


@functools.lru_cache(maxsize=None)
def environment() -> jinja2.Environment:
    """The templates' environment, made once per process: each template is compiled on its first use only (made
    per call, every model's build compiled them again: ~0.5 s of ResNet-50's on the AVX2 host)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
    kernel = env.get_template("ops/_kernel.c.j2").module  # header_comment(header), signature(inputs, scratch)
    env.globals.update(header_comment=kernel.header_comment, signature=kernel.signature)
    return env


def _rows(values: list[str], per_row: int) -> list[str]:
    return [", ".join(values[i:i + per_row]) for i in range(0, len(values), per_row)]


def _hex_floats(data: np.ndarray) -> list[str]:
    return [f"{float(v).hex()}f" if np.isfinite(v) else "0.0f" for v in data]


def render_kernels(model: LoweredModel, env: jinja2.Environment | None = None) -> list[str]:
    """One static C function per kernel, in call order."""
    env = env or environment()
    return [env.get_template(k.template).render(**k.context).rstrip() for k in model.kernels]


def unit_count(kernels: int, jobs: int) -> int:
    """How many kernel units a build with `jobs` parallel cc processes gets: at most `jobs`, each of at least
    KERNELS_PER_UNIT kernel functions; 0 keeps the kernels in model.c."""
    units = min(jobs, kernels // KERNELS_PER_UNIT)
    return units if units >= 2 else 0


def _split_kernels(model: LoweredModel, env: jinja2.Environment, units: int) -> list[list[UnitKernel]]:
    """The kernels dealt into `units` groups of about equal source size (largest first)."""
    entries = []
    for k in model.kernels:
        c = k.context
        body_fn = f"{c['fn']}_body"
        body = env.get_template(k.template).render(**{**c, "fn": body_fn}).rstrip()
        rows = bool(c.get("rows_form"))  # a batched form (dense_rows.c.j2), not a kernel's own `rows`
        args = (*(("n",) if rows else ()), *c["inputs"], "y", *c["weights"], *(("scratch",) if c["scratch"] else ()))
        entries.append(UnitKernel(c["fn"], body_fn, body, tuple(c["inputs"]), tuple(c["weights"]),
                                  bool(c["scratch"]), args, "", bool(c.get("aliased")), rows))
    groups: list[list[UnitKernel]] = [[] for _ in range(units)]
    sizes = [0] * units
    for e in sorted(entries, key=lambda e: -len(e.body)):
        i = sizes.index(min(sizes))
        groups[i].append(e)
        sizes[i] += len(e.body)
    order = {e.fn: i for i, e in enumerate(entries)}
    return [[dataclasses.replace(e, unit=f"kernels_{u}.c") for e in sorted(g, key=lambda e: order[e.fn])]
            for u, g in enumerate(groups)]


def render(model: LoweredModel, weights_mode: str = "incbin", jobs: int = 1) -> CSource:
    """weights_mode: "incbin" embeds weights.bin with the assembler (fast to compile, ELF targets);
    "array" writes the weights as C99 hex-float literals (portable, slow for millions of weights).
    jobs: parallel cc processes the build may use; a large model's kernels then go to units of their own
    (kernels_<i>.c, CSource.units) that model.c calls through hidden entry points."""
    env = environment()
    units = unit_count(len(model.kernels), jobs)
    groups = _split_kernels(model, env, units) if units else []
    unit_kernels = [k for g in groups for k in g]
    kernels = [] if groups else render_kernels(model, env)
    blob = model.weights.data()
    mode = weights_mode if blob.size else "none"
    meta = model.metadata_bytes
    io = [f"{c_name(d['name'])} [N, {', '.join(map(str, d['shape']))}]" for d in model.metadata["inputs"]]
    io_out = [f"{c_name(d['name'])} [N, {', '.join(map(str, d['shape']))}]" for d in model.metadata["outputs"]]
    code = env.get_template("model.c.j2").render(
        title=f"model {c_name(model.name)}",
        version=__version__,
        io_comment=c_comment("; ".join(io) + "  output(s): " + "; ".join(io_out)),
        arena_floats=model.arena.floats,
        group_floats=model.tail.floats if model.tail else 0,
        tail_comment=c_comment(", ".join(c_name(n) for n in model.tail.layers)) if model.tail else "",
        weight_floats=blob.size,
        embedded_weights=mode == "incbin",
        array_weights=mode == "array",
        weights_file=WEIGHTS_FILE,
        weight_floats_decl=max(blob.size, 1),
        weight_rows=_rows(_hex_floats(blob), 6) if mode == "array" else [],
        meta_bytes=meta,
        meta_rows=_rows([str(b) for b in meta], 24),
        kernels=kernels,
        unit_kernels=unit_kernels,
        abi=ABI_VERSION,
        isa_macros=ISA_MACROS,
        model=model,
        profile_layers=model.metadata.get("profile_layers", []),
    )
    files = {WEIGHTS_FILE: blob.tobytes()} if mode == "incbin" else {}
    unit = env.get_template("kernel_unit.c.j2")
    sources = {g[0].unit: unit.render(title=f"model {c_name(model.name)}", version=__version__, kernels=g)
               for g in groups}
    return CSource(code, files, sources)
