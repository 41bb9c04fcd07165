"""Pictures of a network: DOT text, and .svg / .html laid out by Graphviz's `dot` when it is installed,
else by convc's own layered layout (compiler/layered_layout.py), so a picture needs nothing but pip.

One box per layer (name, op, output shape, parameters, MACs), edges labelled with the tensor
shape they carry. Names come from model files, so every label is escaped for DOT (dot escapes the
SVG it writes; the SVG written here goes through ElementTree, and the HTML page escapes what it adds).
"""
from __future__ import annotations

import html
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

from .errors import ConvcError
from .ir import Graph
from .layered_layout import layered_layout
from .ops.base import fmt_shape

FORMATS = (".dot", ".gv", ".svg", ".html")
LAYOUTS = ("auto", "dot", "python")  # auto: dot when it is on PATH, else the built-in layered layout
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


def _title(graph: Graph, summary: dict) -> str:
    return (f"{graph.name}: {sum(r.params for r in summary.values()):,} parameters, "
            f"{sum(r.macs for r in summary.values()):,} MACs per sample")


def _label_lines(layer, row) -> list[str]:
    """The lines of a layer's box: name; op and output shape; parameters and MACs (if any)."""
    parts = [layer.name, f"{layer.op}  {fmt_shape(row.shape)}"]
    if row.params or row.macs:
        parts.append(f"{_count(row.params)} params, {_count(row.macs)} MACs")
    return parts


def to_dot(graph: Graph) -> str:
    """The network as a DOT digraph (top to bottom)."""
    summary = {row.name: row for row in graph.summary().rows}
    ids = {layer.name: f"n{i}" for i, layer in enumerate(graph.layers())}
    title = _title(graph, summary)
    lines = [f"digraph {dot_string(graph.name)} {{",
             f'  graph [rankdir=TB, nodesep=0.35, ranksep=0.35, fontname="Helvetica", label={dot_string(title)}, '
             "labelloc=t];",
             "  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\", fontsize=10];",
             "  edge [fontname=\"Helvetica\", fontsize=8, color=\"#555555\"];"]
    for layer in graph.layers():
        parts = _label_lines(layer, summary[layer.name])
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


def to_svg(graph: Graph, layout: str = "auto") -> str:
    """The network as SVG text, laid out by `dot` (layout "dot", or "auto" with dot on PATH) or by convc's
    layered layout ("python", or "auto" without dot)."""
    if layout not in LAYOUTS:
        raise ConvcError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    if layout == "python" or (layout == "auto" and shutil.which("dot") is None):
        return layered_svg(graph)
    try:
        proc = subprocess.run([dot_program(), "-Tsvg"], input=to_dot(graph), capture_output=True, text=True,
                              timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ConvcError(f"Graphviz's dot failed to run: {e}") from None
    if proc.returncode != 0:
        raise ConvcError(f"Graphviz's dot failed (exit {proc.returncode}): {proc.stderr.strip()[:300]}")
    return proc.stdout


# Text metrics for sizing boxes without a font library: average advance of a sans-serif face, as a
# fraction of the font size (generous, so labels stay inside their boxes).
NAME_SIZE, TEXT_SIZE, EDGE_SIZE, TITLE_SIZE = 11.0, 10.0, 8.0, 14.0
ADVANCE = 0.62
LINE = 14.0
PAD = 8.0
MARGIN = 16.0
TITLE_HEIGHT = 28.0


def _shown(text: str) -> str:
    """Text as it may appear in SVG: printable characters only (XML forbids most control characters)."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def layered_svg(graph: Graph) -> str:
    """The network drawn by the built-in layered layout: boxes, edges with arrowheads and shape labels.

    Marked up as dot's SVG is (a <g class="node"> or "edge" per element, with a <title>), so the same
    tools and tests read both.
    """
    summary = {row.name: row for row in graph.summary().rows}
    layers = graph.layers()
    lines = {layer.name: [_shown(t) for t in _label_lines(layer, summary[layer.name])] for layer in layers}
    sizes = {}
    for name, text in lines.items():
        widest = max(len(text[0]) * NAME_SIZE, *(len(t) * TEXT_SIZE for t in text[1:])) * ADVANCE
        sizes[name] = (widest + 2 * PAD, LINE * len(text) + PAD)
    edges = [(src, layer.name) for layer in layers for src in dict.fromkeys(layer.inputs)]
    placed = layered_layout([layer.name for layer in layers], edges, sizes)
    title = _shown(_title(graph, summary))
    width = max(placed.width, len(title) * TITLE_SIZE * ADVANCE) + 2 * MARGIN
    height = placed.height + TITLE_HEIGHT + 2 * MARGIN
    dx, dy = MARGIN, MARGIN + TITLE_HEIGHT

    svg = ET.Element("svg", xmlns="http://www.w3.org/2000/svg", width=f"{width:.0f}pt", height=f"{height:.0f}pt",
                     viewBox=f"0 0 {width:.0f} {height:.0f}")
    ET.SubElement(svg, "title").text = _shown(graph.name)
    marker = ET.SubElement(ET.SubElement(svg, "defs"), "marker", id="arrow", viewBox="0 0 10 10", refX="10",
                           refY="5", markerWidth="7", markerHeight="7", orient="auto")
    ET.SubElement(marker, "path", d="M0,0 L10,5 L0,10 z", fill="#555555")
    root = ET.SubElement(svg, "g", {"class": "graph", "font-family": "Helvetica,Arial,sans-serif"})
    ET.SubElement(root, "rect", x="0", y="0", width=f"{width:.0f}", height=f"{height:.0f}", fill="white")
    ET.SubElement(root, "text", {"x": f"{width / 2:.1f}", "y": f"{MARGIN + 14:.1f}", "text-anchor": "middle",
                                 "font-size": f"{TITLE_SIZE:g}"}).text = title
    labelled = set()
    fan_out = {name: 0 for name in lines}
    for src, _ in edges:
        fan_out[src] += 1
    for (src, dst), points in placed.edges.items():
        g = ET.SubElement(root, "g", {"class": "edge"})
        ET.SubElement(g, "title").text = f"{_shown(src)}->{_shown(dst)}"
        ET.SubElement(g, "path", {"d": _curve([(x + dx, y + dy) for x, y in points]), "fill": "none",
                                  "stroke": "#555555", "marker-end": "url(#arrow)"})
        if src not in labelled:  # one label per tensor, under the layer that writes it
            labelled.add(src)
            box = placed.boxes[src]
            x0, y0 = points[0]
            if fan_out[src] > 1:  # beside the box's corner, clear of the edges that fan out below it
                x0, y0 = box.x + box.width / 2, y0 - 2
            ET.SubElement(g, "text", {"x": f"{x0 + dx + 4:.1f}", "y": f"{y0 + 12 + dy:.1f}",
                                      "font-size": f"{EDGE_SIZE:g}", "fill": "#333333"}).text = \
                _shown(fmt_shape(graph.shape(src)))
    for layer in layers:
        box = placed.boxes[layer.name]
        g = ET.SubElement(root, "g", {"class": "node"})
        ET.SubElement(g, "title").text = _shown(layer.name)
        ET.SubElement(g, "rect", {"x": f"{box.x - box.width / 2 + dx:.1f}", "y": f"{box.y + dy:.1f}",
                                  "width": f"{box.width:.1f}", "height": f"{box.height:.1f}", "rx": "5",
                                  "fill": _COLOURS.get(layer.op, _ACTIVATION_COLOUR), "stroke": "black",
                                  "stroke-width": "2" if layer.name in graph.outputs else "1"})
        for i, text in enumerate(lines[layer.name]):
            ET.SubElement(g, "text", {"x": f"{box.x + dx:.1f}", "y": f"{box.y + dy + PAD / 2 + LINE * (i + 0.75):.1f}",
                                      "text-anchor": "middle", "font-size": f"{NAME_SIZE if i == 0 else TEXT_SIZE:g}",
                                      **({"font-weight": "bold"} if i == 0 else {})}).text = text
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(svg, encoding="unicode") + "\n"


def _curve(points: list[tuple[float, float]]) -> str:
    """An SVG path through `points`: vertical segments stay straight, the joins between layers are S-curves."""
    parts = [f"M{points[0][0]:.1f},{points[0][1]:.1f}"]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 == x1:
            parts.append(f"L{x1:.1f},{y1:.1f}")
        else:
            mid = (y0 + y1) / 2
            parts.append(f"C{x0:.1f},{mid:.1f} {x1:.1f},{mid:.1f} {x1:.1f},{y1:.1f}")
    return " ".join(parts)


def to_html(graph: Graph, layout: str = "auto") -> str:
    """A self-contained page: the SVG picture and the summary table."""
    svg = to_svg(graph, layout)
    svg = svg[svg.find("<svg"):]  # drop the XML prolog and DOCTYPE; inline SVG needs neither
    title = html.escape(f"{graph.name} (convc)")
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{title}</title>\n<style>body{{font-family:sans-serif}} pre{{font-size:12px}}</style>"
            f"</head>\n<body>\n<h1>{title}</h1>\n{svg}\n<pre>{html.escape(str(graph.summary()))}</pre>\n"
            "</body></html>\n")


def draw(graph: Graph, path: str | os.PathLike, layout: str = "auto") -> Path:
    """Write the picture; the format follows the suffix: .dot/.gv, .svg or .html (laid out per `layout`)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ConvcError(f"{path}: unknown picture format {path.suffix!r}; use one of {', '.join(FORMATS)}")
    text = to_dot(graph) if suffix in (".dot", ".gv") else {".svg": to_svg, ".html": to_html}[suffix](graph, layout)
    path.write_text(text, encoding="utf-8")
    return path


__all__ = ["draw", "to_dot", "to_svg", "to_html", "layered_svg", "dot_string"]
