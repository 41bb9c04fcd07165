"""Per-layer debugging: every layer of the debug build, with the kernels the real build chooses, vs. the
interpreter, and the first divergent one named with its kernel."""
import re
import warnings

import pytest

import compiler
from compiler.cli import main
from compiler.debug import check_layers, with_all_outputs
from conftest import EXAMPLES, TARGET_IDS, TARGETS, model_dict, runnable


def load(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", compiler.ConvcWarning)
        return compiler.load(path)


def patch_kernel(code: str, layer: str, edit, items: bool = False) -> str:
    """Apply `edit` to the text of the generated function of `layer` (its C name: the primary layer) only;
    items: the work-item function of a threaded kernel (L5_conv1_items)."""
    suffix = "_items" if items else ""
    match = re.search(rf"static void L\d+_{layer}{suffix}\(.*?\n}}\n", code, re.S)
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
    report = check_layers(graph, batch=2, seed=1, opt_level=0)
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
    report = check_layers(graph, opt_level=0, transform_source=lambda code: patch_kernel(code, layer, bug))
    assert not report.ok
    assert report.first_divergent.name == layer
    names = [r.name for r in report.rows]
    assert all(r.ok for r in report.rows[:names.index(layer)])
    text = report.format()
    assert f"first divergent layer: {layer} ({graph.layer(layer).op}, kernel plain)" in text
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
    assert check_layers(load(EXAMPLES / "lenet5.yaml"), opt_level=0).outputs_vs_source == []  # level 0: no passes


# ---------------------------------------------------------------- the kernels users run (opt level 2)
def winograd_input_transform_bug(body: str) -> str:
    assert body.count("tr[0][e] = d[0][e] - d[2][e];") == 1, "winograd template changed: update this bug"
    return body.replace("tr[0][e] = d[0][e] - d[2][e];", "tr[0][e] = d[0][e] + d[2][e];")


def depthwise_bias_bug(body: str) -> str:
    assert body.count("const convc_vec b = bias_v[cb];") == 1, "blocked depthwise template changed: update this bug"
    return body.replace("const convc_vec b = bias_v[cb];", "const convc_vec b = bias_v[cb] * 2.0f;")


def grouped_input_channel_bug(body: str) -> str:
    """Every group reads the first group's input channels."""
    assert body.count("ci0 = grp * 4;") == 1, "grouped template changed: update this bug"
    return body.replace("ci0 = grp * 4;", "ci0 = 0;")


# b1 (3×3 on a 12×12 map) takes Winograd; e (1×1) writes d's input channel-blocked, the depthwise conv d reads
# it so (and writes it back blocked for p); the grouped conv g (4 groups of 4) reads and writes blocked tensors;
# z needs C×H×W.
LEVEL2_MODEL = model_dict(
    [{"name": "b1", "op": "conv2d", "filters": 32, "kernel": 3, "padding": 1}, {"name": "r1", "op": "relu"},
     {"name": "e", "op": "conv2d", "filters": 32, "kernel": 1}, {"name": "e_act", "op": "relu6"},
     {"name": "d", "op": "conv2d", "filters": 32, "kernel": 3, "padding": 1, "groups": 32},
     {"name": "d_act", "op": "relu6"}, {"name": "p", "op": "conv2d", "filters": 16, "kernel": 1},
     {"name": "g", "op": "conv2d", "filters": 16, "kernel": 3, "padding": 1, "groups": 4},
     {"name": "z", "op": "conv2d", "filters": 16, "kernel": 3, "stride": 2, "padding": 1}],
    shape=(16, 12, 12), name="level2", seed=3)


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
def test_the_debugger_checks_the_level_2_kernels_and_layouts(target):
    report = check_layers(load(LEVEL2_MODEL), march=runnable(target), kernels={"b1": "winograd"})
    assert report.ok, report.format()
    rows = {r.sources[0]: r for r in report.rows}
    assert rows["b1"].kernel == "winograd" and rows["d"].kernel == "depthwise" and rows["g"].kernel == "grouped"
    lanes = target.lanes
    assert rows["d"].layout == f"C/{lanes}" and rows["e"].layout == f"C/{lanes}"  # compared as N×C×H×W
    assert rows["g"].layout == f"C/{lanes}"
    assert f"depthwise /C/{lanes}" in report.format()


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("layer, bug, kernel", [("b1", winograd_input_transform_bug, "winograd"),
                                                ("d", depthwise_bias_bug, "depthwise"),
                                                ("g", grouped_input_channel_bug, "grouped")],
                         ids=["winograd", "blocked-depthwise", "blocked-grouped"])
def test_a_bug_in_a_level_2_kernel_is_named(target, layer, bug, kernel):
    graph = load(LEVEL2_MODEL)
    report = check_layers(graph, march=runnable(target), kernels={"b1": "winograd"},
                          transform_source=lambda code: patch_kernel(code, layer, bug, items=True))
    first = report.first_divergent
    assert first is not None and first.sources[0] == layer and first.kernel == kernel
    assert all(r.ok for r in report.rows[:report.rows.index(first)])
    assert f"kernel {kernel})" in report.format()
