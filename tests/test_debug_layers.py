"""Per-layer debugging: every layer of the debug build vs. the interpreter, and the first divergent one named."""
import re
import warnings

import pytest

import compiler
from compiler.cli import main
from compiler.debug import check_layers, with_all_outputs
from conftest import EXAMPLES


def load(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", compiler.ConvcWarning)
        return compiler.load(path)


def patch_kernel(code: str, layer: str, edit) -> str:
    """Apply `edit` to the text of the generated function of `layer` only."""
    match = re.search(rf"static void L\d+_{layer}\(.*?\n}}\n", code, re.S)
    assert match, f"no kernel for {layer}"
    body = match.group(0)
    new = edit(body)
    assert new != body, f"the edit changed nothing in {layer}"
    return code.replace(body, new)


def off_by_one_padding(body: str) -> str:
    assert body.count("oh * 2 - 1;") == 1, "conv2d template changed: update this bug"
    return body.replace("oh * 2 - 1;", "oh * 2 - 0;")


def wrong_bias_index(body: str) -> str:
    assert body.count("bias[u]") == 1, "dense template changed: update this bug"
    return body.replace("bias[u]", "bias[u + 1]")  # reads the next bias: still inside the weights blob


def bump_first_output(body: str) -> str:
    """Template-independent: one wrong value at the end of the kernel."""
    return body[:-2] + "    y[0] += 0.5f;\n}\n"


def test_correct_model_agrees_everywhere():
    graph = load(EXAMPLES / "lenet5.yaml")
    report = check_layers(graph, batch=2, seed=1)
    assert report.ok and report.first_divergent is None
    assert [r.name for r in report.rows] == [layer.name for layer in graph.layers() if layer.op != "input"]
    assert all(r.max_abs < 1e-4 for r in report.rows)
    assert "all 12 layers agree" in str(report)


def test_debug_graph_exposes_every_layer_including_views():
    graph = load(EXAMPLES / "lenet5.yaml")
    debug = with_all_outputs(graph)
    assert "flatten_7" in debug.outputs and graph.outputs == ["fc3"]  # the original is untouched
    assert len(debug.outputs) == len(graph.layers()) - 1


@pytest.mark.parametrize("model, layer, bug", [
    ("resnet_small", "s2b1_conv1", off_by_one_padding),  # a convolution in the middle of the residual network
    ("resnet_small", "s3b1_proj", bump_first_output),  # on the shortcut branch
    ("lenet5", "fc2", wrong_bias_index),
], ids=["conv-padding", "shortcut", "dense-bias"])
def test_injected_bug_is_named(model, layer, bug):
    graph = load(EXAMPLES / f"{model}.yaml")
    report = check_layers(graph, transform_source=lambda code: patch_kernel(code, layer, bug))
    assert not report.ok
    assert report.first_divergent.name == layer
    names = [r.name for r in report.rows]
    assert all(r.ok for r in report.rows[:names.index(layer)])
    text = report.format()
    assert f"first divergent layer: {layer} ({graph.layer(layer).op})" in text
    marked = [line for line in text.splitlines() if line.startswith(">>")]
    assert len(marked) == 1 and layer in marked[0] and "DIVERGES" in marked[0]
    assert "\x1b[" not in text
    coloured = report.format(color=True)
    assert any(line.startswith("\x1b[1;31m>>") and layer in line for line in coloured.splitlines())


def test_cli_check_layers(capsys):
    assert main(["check", str(EXAMPLES / "lenet5.yaml"), "--layers", "--batch", "1", "--opt-level", "0"]) == 0
    out = capsys.readouterr().out
    assert "conv1" in out and "fc3" in out and "all 12 layers agree" in out
    assert "\x1b[" not in out  # not a terminal: no colour


def test_cli_check_layers_optimized_compares_fused_layers_and_outputs(capsys):
    """At the default opt level conv+relu pairs are fused: fewer rows, and the outputs are checked against the
    unoptimized graph too."""
    assert main(["check", str(EXAMPLES / "lenet5.yaml"), "--layers", "--batch", "1"]) == 0
    out = capsys.readouterr().out
    assert "all 8 layers agree" in out
    assert "output fc3 vs. the unoptimized graph" in out and out.count(": OK") >= 1


def test_a_wrong_optimization_pass_shows_at_the_outputs(monkeypatch):
    """Rows compare with the optimized graph; its outputs are also compared with the unoptimized one."""
    from compiler import passes

    def scale_fc3_weights(graph):  # a deliberately wrong pass
        graph = graph.copy()
        graph.weights["fc3.weight"] = graph.weights["fc3.weight"] * 1.5
        return graph

    monkeypatch.setitem(passes.PIPELINES, 9, [scale_fc3_weights])
    report = check_layers(load(EXAMPLES / "lenet5.yaml"), opt_level=9)
    assert report.first_divergent is None and not report.ok
    assert [r.name for r in report.outputs_vs_source] == ["fc3"] and not report.outputs_vs_source[0].ok
    assert "an optimization pass of opt level 9 changed the result" in str(report)
    assert check_layers(load(EXAMPLES / "lenet5.yaml")).outputs_vs_source == []  # level 0: no passes
