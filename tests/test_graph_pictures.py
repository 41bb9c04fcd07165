"""Pictures (DOT always; SVG/HTML through Graphviz's dot when installed), summary JSON, and compile progress."""
import io
import json
import shutil
import subprocess
import warnings
import xml.etree.ElementTree as ET

import pytest

import compiler
from compiler.cli import main
from compiler.draw import draw, dot_string, to_dot
from compiler.progress import STAGES, no_progress, terminal_progress
from conftest import EXAMPLES, ROOT, model_dict

SVG = "{http://www.w3.org/2000/svg}"
WEIRD = ['a"b', "back\\slash\\n", "<tag> & amp;", "x\ny", "\\N"]


def load(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", compiler.ConvcWarning)
        return compiler.load(path)


def svg_texts(svg: str) -> list[str]:
    return [t.text or "" for t in ET.fromstring(svg).iter(f"{SVG}text")]


def weird_graph():
    layers = [{"name": WEIRD[0], "op": "conv2d", "filters": 2, "kernel": 3, "padding": 1},
              {"name": WEIRD[1], "op": "relu"},
              {"name": WEIRD[2], "op": "add", "inputs": [WEIRD[0], WEIRD[1]]},
              {"name": WEIRD[3], "op": "concat", "inputs": [WEIRD[2], WEIRD[0]]},
              {"name": WEIRD[4], "op": "global_avgpool"}]
    return compiler.load(model_dict(layers, shape=(2, 6, 6), name='n"et\\', seed=0))


def test_dot_has_a_box_per_layer_and_shaped_edges():
    graph = load(EXAMPLES / "resnet_small.yaml")
    text = to_dot(graph)
    assert text.count("[label=") == len(graph.layers()) + sum(len(set(layer.inputs)) for layer in graph.layers())
    assert '"s1b1_add\\nadd  16×32×32"' in text  # name, op and output shape
    assert "2.3k params, 2.36M MACs" in text  # s1b1_conv1: 16*16*9 = 2304 weights, 2304*32*32 MACs
    assert '[label="16×32×32"]' in text  # an edge labelled with its tensor's shape


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed (apt-get install graphviz)")
def test_svg_is_laid_out_by_dot_with_every_layer():
    graph = load(EXAMPLES / "resnet_small.yaml")
    root = ET.fromstring(compiler.draw.to_svg(graph))
    nodes = [g for g in root.iter(f"{SVG}g") if g.get("class") == "node"]
    edges = [g for g in root.iter(f"{SVG}g") if g.get("class") == "edge"]
    assert len(nodes) == len(graph.layers())
    assert len(edges) == sum(len(set(layer.inputs)) for layer in graph.layers())
    texts = svg_texts(compiler.draw.to_svg(graph))
    assert {layer.name for layer in graph.layers()} <= set(texts)


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed (apt-get install graphviz)")
def test_names_from_model_files_are_shown_literally(tmp_path):
    graph = weird_graph()
    svg = draw(graph, tmp_path / "w.svg").read_text()
    texts = svg_texts(svg)  # parses: every <, & and quote was escaped
    for name in WEIRD:
        shown = "".join(ch if ch.isprintable() else "?" for ch in name)
        assert shown in texts, (name, texts)
    page = draw(graph, tmp_path / "w.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "<?xml" not in page
    assert "<title>n&quot;et\\ (convc)</title>" in page and "&lt;tag&gt; &amp; amp;" in page


def test_dot_string_escapes():
    assert dot_string('a"b\\n') == '"a\\"b\\\\n"'
    assert dot_string("x\ny&z") == '"x?y&amp;z"'


def test_dot_needs_no_graphviz(tmp_path, monkeypatch):
    graph = load(EXAMPLES / "lenet5.yaml")
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot here (the .svg path: test_pictures_without_graphviz.py)
    assert draw(graph, tmp_path / "n.dot").read_text().startswith('digraph "lenet5"')
    with pytest.raises(compiler.ConvcError, match="unknown picture format"):
        draw(graph, tmp_path / "n.png")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed (apt-get install graphviz)")
def test_cli_graph(tmp_path, capsys):
    for name in ("net.svg", "net.html", "net.dot"):
        assert main(["graph", str(EXAMPLES / "lenet5.yaml"), "-o", str(tmp_path / name)]) == 0
        assert (tmp_path / name).stat().st_size > 0
    proc = subprocess.run(["dot", "-Tsvg", str(tmp_path / "net.dot")], capture_output=True, text=True)
    assert proc.returncode == 0 and "conv1" in proc.stdout


def test_docs_picture_shows_the_resnet_example():
    texts = svg_texts((ROOT / "docs" / "resnet_small.svg").read_text())
    graph = load(EXAMPLES / "resnet_small.yaml")
    assert {layer.name for layer in graph.layers()} <= set(texts)


def test_summary_json_has_shapes_params_macs_formulas(capsys):
    assert main(["summary", str(EXAMPLES / "lenet5.yaml"), "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert rows["conv1"]["shape"] == [6, 28, 28]
    assert rows["conv1"]["params"] == 6 * 25 + 6 and rows["conv1"]["macs"] == 6 * 28 * 28 * 25
    assert "28" in rows["conv1"]["formula"]


def test_compile_reports_stages_in_order():
    seen = []
    compiler.compile(EXAMPLES / "lenet5.yaml", progress=seen.append)
    assert seen == [*STAGES, "done"]


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_only_on_a_terminal_and_not_quiet():
    terminal = FakeTerminal()
    report = terminal_progress(stream=terminal)
    report("cc")
    assert "] cc" in terminal.getvalue() and terminal.getvalue().startswith("convc: [")
    assert terminal_progress(quiet=True, stream=FakeTerminal()) is no_progress
    assert terminal_progress(stream=io.StringIO()) is no_progress


def test_cli_is_quiet_off_a_terminal(tmp_path, capsys):
    assert main(["compile", str(EXAMPLES / "lenet5.yaml"), "-o", str(tmp_path / "l.so")]) == 0
    assert "convc: [" not in capsys.readouterr().err
