"""Pictures of a network: DOT text written here, laid out by Graphviz's `dot` for .svg and .html.

One box per layer (name, op, output shape, parameters, MACs), edges labelled with the tensor
shape they carry. Names come from model files, so every label is escaped for DOT (and the HTML
page escapes what it adds itself; dot escapes the SVG it writes).
"""
from __future__ import annotations

import html
import os
import shutil
import subprocess
from pathlib import Path


from .errors import ConvcError
from .ir import Graph
from .ops.base import fmt_shape

FORMATS = (".dot", ".gv", ".svg", ".html")
INSTALL_HINT = "install Graphviz (Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz)"

# Fill colours by kind of op, so the eye finds convolutions, pools and merges.
_COLOURS = {
    "input": "#ffffff", "conv2d": "#cfe2f3", "dense": "#d9ead3", "batchnorm": "#eeeeee",
    "maxpool2d": "#fff2cc", "avgpool2d": "#fff2cc", "global_avgpool": "#fff2cc", "global_maxpool": "#fff2cc",
    "add": "#f9cb9c", "concat": "#f9cb9c", "softmax": "#ead1dc",
}
_ACTIVATION_COLOUR = "#f3f3f3"


def dot_string(text: str) -> str:
    """`text` as a quoted DOT string that shows literally: no escapes (\\n, \\N, \\l), entities or control bytes."""
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    text = text.replace("\\", "\\\\").replace('"', '\\"').replace("&", "&amp;")
    return f'"{text}"'


def _count(n: int) -> str:
    for unit, scale in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)


def to_dot(graph: Graph) -> str:
    """The network as a DOT digraph (top to bottom)."""
    summary = {row.name: row for row in graph.summary().rows}
    ids = {layer.name: f"n{i}" for i, layer in enumerate(graph.layers())}
    title = (f"{graph.name}: {sum(r.params for r in summary.values()):,} parameters, "
             f"{sum(r.macs for r in summary.values()):,} MACs per sample")
    lines = [f"digraph {dot_string(graph.name)} {{",
             f'  graph [rankdir=TB, nodesep=0.35, ranksep=0.35, fontname="Helvetica", label={dot_string(title)}, '
             "labelloc=t];",
             "  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\", fontsize=10];",
             "  edge [fontname=\"Helvetica\", fontsize=8, color=\"#555555\"];"]
    for layer in graph.layers():
        row = summary[layer.name]
        parts = [layer.name, f"{layer.op}  {fmt_shape(row.shape)}"]
        if row.params or row.macs:
            parts.append(f"{_count(row.params)} params, {_count(row.macs)} MACs")
        label = "\\n".join(dot_string(p)[1:-1] for p in parts)  # escaped pieces joined by DOT's newline
        colour = _COLOURS.get(layer.op, _ACTIVATION_COLOUR)
        extra = ", penwidth=2" if layer.name in graph.outputs else ""
        lines.append(f'  {ids[layer.name]} [label="{label}", fillcolor="{colour}"{extra}];')
    for layer in graph.layers():
        for src in dict.fromkeys(layer.inputs):  # add(a, a): one edge
            lines.append(f"  {ids[src]} -> {ids[layer.name]} [label={dot_string(fmt_shape(graph.shape(src)))}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def dot_program() -> str:
    path = shutil.which("dot")
    if path is None:
        raise ConvcError(f"drawing .svg or .html needs Graphviz's `dot` program, which is not on PATH: "
                         f"{INSTALL_HINT}; or write .dot instead")
    return path


def to_svg(graph: Graph) -> str:
    """The network laid out by `dot` as SVG text."""
    try:
        proc = subprocess.run([dot_program(), "-Tsvg"], input=to_dot(graph), capture_output=True, text=True,
                              timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ConvcError(f"Graphviz's dot failed to run: {e}") from None
    if proc.returncode != 0:
        raise ConvcError(f"Graphviz's dot failed (exit {proc.returncode}): {proc.stderr.strip()[:300]}")
    return proc.stdout


def to_html(graph: Graph) -> str:
    """A self-contained page: the SVG picture and the summary table."""
    svg = to_svg(graph)
    svg = svg[svg.find("<svg"):]  # drop the XML prolog and DOCTYPE; inline SVG needs neither
    title = html.escape(f"{graph.name} (convc)")
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{title}</title>\n<style>body{{font-family:sans-serif}} pre{{font-size:12px}}</style>"
            f"</head>\n<body>\n<h1>{title}</h1>\n{svg}\n<pre>{html.escape(str(graph.summary()))}</pre>\n"
            "</body></html>\n")


def draw(graph: Graph, path: str | os.PathLike) -> Path:
    """Write the picture; the format follows the suffix: .dot/.gv (no Graphviz needed), .svg or .html."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ConvcError(f"{path}: unknown picture format {path.suffix!r}; use one of {', '.join(FORMATS)}")
    text = {".dot": to_dot, ".gv": to_dot, ".svg": to_svg, ".html": to_html}[suffix](graph)
    path.write_text(text, encoding="utf-8")
    return path


__all__ = ["draw", "to_dot", "to_svg", "to_html", "dot_string"]
