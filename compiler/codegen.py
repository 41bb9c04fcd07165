"""Rendering: a LoweredModel -> one C source file (plus the weights blob it embeds)."""
from __future__ import annotations

from dataclasses import dataclass
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
    """model.c and the files it needs beside it when compiled (name -> bytes)."""
    code: str
    files: dict[str, bytes]


def environment() -> jinja2.Environment:
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


def render(model: LoweredModel, weights_mode: str = "incbin") -> CSource:
    """weights_mode: "incbin" embeds weights.bin with the assembler (fast to compile, ELF targets);
    "array" writes the weights as C99 hex-float literals (portable, slow for millions of weights)."""
    env = environment()
    kernels = render_kernels(model, env)
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
        weight_floats=blob.size,
        embedded_weights=mode == "incbin",
        array_weights=mode == "array",
        weights_file=WEIGHTS_FILE,
        weight_floats_decl=max(blob.size, 1),
        weight_rows=_rows(_hex_floats(blob), 6) if mode == "array" else [],
        meta_bytes=meta,
        meta_rows=_rows([str(b) for b in meta], 24),
        kernels=kernels,
        abi=ABI_VERSION,
        isa_macros=ISA_MACROS,
        model=model,
        profile_layers=model.metadata.get("profile_layers", []),
    )
    files = {WEIGHTS_FILE: blob.tobytes()} if mode == "incbin" else {}
    return CSource(code, files)
