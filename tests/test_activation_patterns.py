"""The recognize_activations pass (compiler/passes/recognize_activations.py): the element-wise expansions that
torch.onnx writes for SiLU, GELU (erf and tanh forms) and Mish become one layer at opt level >= 1, level 0 runs
them as exported, and every level matches onnxruntime (rtol 1e-4, atol 1e-5) on models exported by both
exporters (TorchScript: dynamo=False; torch.export: dynamo=True)."""
from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest

import compiler
from compiler.passes import optimize
from conftest import compile_and_check, model_dict

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

RTOL, ATOL = 1e-4, 1e-5


class ConvAct(torch.nn.Module):
    """conv -> activation -> conv: the activation's input and output are each read by one layer."""

    def __init__(self, act):
        super().__init__()
        self.c1, self.act, self.c2 = torch.nn.Conv2d(3, 8, 3, padding=1), act, torch.nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.c2(self.act(self.c1(x)))


ACTIVATIONS = {
    "silu": (torch.nn.SiLU, {}),
    "gelu": (torch.nn.GELU, {"approximate": "none"}),
    "gelu_tanh": (lambda: torch.nn.GELU(approximate="tanh"), {"approximate": "tanh"}),
    "mish": (torch.nn.Mish, {}),
}
# (dynamo, opset): the TorchScript exporter at opset 17; torch.export at opset 18 (GELU as Div/Erf/Add/Mul/Mul)
# and at its default (20: a Gelu node, nothing to recognize, but it must still import and match).
EXPORTERS = {"torchscript-17": (False, 17), "dynamo-18": (True, 18), "dynamo-default": (True, None)}


def export(module, path, dynamo: bool, opset: int | None):
    if dynamo:
        pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    x = torch.randn(1, 3, 10, 10)
    kw = {} if opset is None else {"opset_version": opset}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            torch.onnx.export(module.eval(), (x,), str(path), dynamo=dynamo, **kw)
        finally:
            logging.disable(logging.NOTSET)
    return path


@pytest.mark.parametrize("exporter", sorted(EXPORTERS))
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_exported_activations_are_recognized_and_match_onnxruntime(tmp_path, name, exporter):
    make, attrs = ACTIVATIONS[name]
    dynamo, opset = EXPORTERS[exporter]
    torch.manual_seed(1)
    path = export(ConvAct(make()), tmp_path / "m.onnx", dynamo, opset)
    exported = {node.op_type for node in onnx.load(str(path)).graph.node}
    if name == "gelu_tanh" and "Pow" in exported:
        pytest.skip("torch.export writes x³ as Pow, which convc's ONNX front end does not import (the pass "
                    "recognizes pow(x, 3): test_native_expansions_are_recognized)")
    graph = compiler.load(path)
    op = name.split("_")[0]
    level1 = [activation(layer) for layer in optimize(graph, 1).layers() if layer.op not in ("input", "conv2d")]
    assert level1 == [(op, attrs)], level1
    if {"Sigmoid", "Erf", "Tanh", "Softplus"} & exported:  # an expansion: level 0 keeps it as exported
        assert len(optimize(graph, 0).layers()) > len(graph.inputs) + 3
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = (3.0 * np.random.default_rng(2).standard_normal((2, 3, 10, 10))).astype(np.float32)
    ref = np.concatenate([sess.run(None, {sess.get_inputs()[0].name: x[i:i + 1]})[0] for i in range(2)])
    for level in (0, 1, 2):
        got = compiler.compile(graph, opt_level=level)(x)
        np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL, err_msg=f"opt level {level}")


def activation(layer) -> tuple[str, dict]:
    """(op, attributes) of a pointwise layer, or of the activation fused into a conv (fuse_epilogue)."""
    if layer.op == "fused_conv2d":
        return layer.attrs.activation, dict(layer.attrs.activation_attrs)
    return layer.op, {f: getattr(layer.attrs, f) for f in vars(layer.attrs)}


def load(layers, shape=(3, 6, 6), outputs=None, values=None):
    """A description with scalar constants: `values` maps constant layer names to their value."""
    desc = model_dict(layers, shape=shape, **({"outputs": outputs} if outputs else {}))
    graph = compiler.load(desc)
    for name, v in (values or {}).items():
        graph.weights[f"{name}.value"] = np.array([v], np.float32)
    return graph


def c(name):
    return {"name": name, "op": "constant", "shape": [1]}


GELU_ERF_TS = [  # as the TorchScript exporter writes it: ((x · (erf(x / √2) + 1)) · 0.5
    {"name": "x1", "op": "conv2d", "filters": 4, "kernel": 3, "padding": 1}, c("sqrt2"),
    {"name": "d", "op": "div", "inputs": ["x1", "sqrt2"]}, {"name": "e", "op": "erf"}, c("one"),
    {"name": "a", "op": "add", "inputs": ["e", "one"]}, {"name": "m", "op": "mul", "inputs": ["x1", "a"]}, c("half"),
    {"name": "y", "op": "mul", "inputs": ["m", "half"]}]
GELU_VALUES = {"sqrt2": 2 ** 0.5, "one": 1.0, "half": 0.5}


@pytest.mark.parametrize("layers,values,op", [
    ([{"name": "x1", "op": "conv2d", "filters": 4, "kernel": 1}, {"name": "s", "op": "sigmoid"},
      {"name": "y", "op": "mul", "inputs": ["s", "x1"]}], {}, "silu"),
    ([{"name": "s", "op": "sigmoid"}, {"name": "y", "op": "mul", "inputs": ["x", "s"]}], {}, "silu"),
    (GELU_ERF_TS, GELU_VALUES, "gelu"),
    # x · 0.5 · (1 + erf(x · (1/√2))) with the factors grouped the other way
    ([c("half"), {"name": "h", "op": "mul", "inputs": ["x", "half"]}, c("r"), {"name": "d", "op": "mul",
                                                                              "inputs": ["r", "x"]},
      {"name": "e", "op": "erf"}, c("one"), {"name": "a", "op": "add", "inputs": ["one", "e"]},
      {"name": "y", "op": "mul", "inputs": ["a", "h"]}], {"half": 0.5, "r": 0.5 ** 0.5, "one": 1.0}, "gelu"),
    # torch.export's tanh form: x · (0.5 · (tanh(√(2/π) · (x + 0.044715 · pow(x, 3))) + 1))
    ([c("three"), {"name": "p", "op": "pow", "inputs": ["x", "three"]}, c("k"),
      {"name": "w", "op": "mul", "inputs": ["k", "p"]}, {"name": "v", "op": "add", "inputs": ["x", "w"]}, c("s2pi"),
      {"name": "u", "op": "mul", "inputs": ["s2pi", "v"]}, {"name": "t", "op": "tanh"}, c("one"),
      {"name": "a", "op": "add", "inputs": ["t", "one"]}, c("half"), {"name": "h", "op": "mul", "inputs": ["half", "a"]},
      {"name": "y", "op": "mul", "inputs": ["x", "h"]}],
     {"three": 3.0, "k": 0.044715, "s2pi": (2 / np.pi) ** 0.5, "one": 1.0, "half": 0.5}, "gelu"),
    ([{"name": "sp", "op": "softplus"}, {"name": "t", "op": "tanh"}, {"name": "y", "op": "mul", "inputs": ["t", "x"]}],
     {}, "mish"),
], ids=["silu-after-conv", "silu-of-input", "gelu-erf-torchscript", "gelu-erf-regrouped", "gelu-tanh-pow", "mish"])
def test_native_expansions_are_recognized(layers, values, op):
    graph = load(layers, values=values)
    opt = optimize(graph, 1)
    ops = [layer.op for layer in opt.layers()]
    assert not {"sigmoid", "erf", "tanh", "softplus", "constant", "mul", "add", "pow"} & set(ops), ops
    assert activation(opt.layer("y"))[0] == op
    assert set(opt.layer("y").sources) == {layer["name"] for layer in layers if layer.get("op") != "constant"}
    for level in (0, 1, 2):
        compile_and_check(graph, opt_level=level)


@pytest.mark.parametrize("layers,values,outputs", [
    # the sigmoid is read by another layer too
    ([{"name": "s", "op": "sigmoid"}, {"name": "y", "op": "mul", "inputs": ["x", "s"]},
      {"name": "z", "op": "add", "inputs": ["y", "s"]}], {}, None),
    # the sigmoid is a model output
    ([{"name": "s", "op": "sigmoid"}, {"name": "y", "op": "mul", "inputs": ["x", "s"]}], {}, ["y", "s"]),
    # sigmoid of another tensor
    ([{"name": "r", "op": "relu"}, {"name": "s", "op": "sigmoid"}, {"name": "y", "op": "mul", "inputs": ["x", "s"]}],
     {}, None),
    # 0.4 instead of 0.5
    (GELU_ERF_TS, {**GELU_VALUES, "half": 0.4}, None),
    # divided by 2 instead of √2
    (GELU_ERF_TS, {**GELU_VALUES, "sqrt2": 2.0}, None),
    # the inner product x · (1 + erf) is read elsewhere too
    (GELU_ERF_TS + [{"name": "z", "op": "add", "inputs": ["y", "m"]}], GELU_VALUES, None),
    # mish with a softplus that is not the default one
    ([{"name": "sp", "op": "softplus", "beta": 2.0}, {"name": "t", "op": "tanh"},
      {"name": "y", "op": "mul", "inputs": ["t", "x"]}], {}, None),
], ids=["sigmoid-read-twice", "sigmoid-is-output", "sigmoid-of-other", "gelu-wrong-half", "gelu-wrong-divisor",
        "gelu-inner-read-twice", "mish-softplus-beta"])
def test_lookalikes_are_left_alone(layers, values, outputs):
    graph = load(layers, values=values, outputs=outputs)
    opt = optimize(graph, 1)
    assert not {"silu", "gelu", "mish"} & {activation(layer)[0] for layer in opt.layers()}
    compile_and_check(graph, opt_level=2)
