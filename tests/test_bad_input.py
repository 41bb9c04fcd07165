"""Bad descriptions get a clear error naming the file, the layer and the attribute — never a crash."""
import re

import numpy as np
import pytest

import compiler
from compiler import ModelError, ShapeError
from conftest import model_dict, random_input, assert_close


def load_error(desc) -> str:
    with pytest.raises(ModelError) as e:
        compiler.load(desc)
    return str(e.value)


def test_malformed_yaml(tmp_path):
    p = tmp_path / "m.yaml"
    p.write_text("input: {shape: [1, 8, 8]\nlayers: [\n")
    msg = load_error(p)
    assert str(p) in msg and "malformed YAML" in msg


def test_malformed_json(tmp_path):
    p = tmp_path / "m.json"
    p.write_text('{"input": ')
    assert "malformed JSON" in load_error(p)


@pytest.mark.parametrize("content", ["", "[1, 2]", "just text"])
def test_not_a_mapping(tmp_path, content):
    p = tmp_path / "m.yaml"
    p.write_text(content)
    assert "must be a mapping" in load_error(p)


def test_missing_file(tmp_path):
    assert "cannot read" in load_error(tmp_path / "nope.yaml")


def test_unknown_format(tmp_path):
    p = tmp_path / "m.txt"
    p.write_text("x")
    assert "unknown model format" in load_error(p)


def test_unknown_op_lists_known_ops():
    msg = load_error(model_dict([{"name": "c", "op": "conv3d", "filters": 2, "kernel": 3}]))
    assert "layers[0]" in msg and "'c'" in msg and "conv3d" in msg and "conv2d" in msg and "maxpool2d" in msg


def test_unknown_attribute():
    msg = load_error(model_dict([{"name": "c1", "op": "conv2d", "filters": 2, "kernal": 3}]))
    assert "layer 'c1' (conv2d)" in msg and "'kernal'" in msg and "kernel" in msg


def test_missing_attribute():
    msg = load_error(model_dict([{"name": "c1", "op": "conv2d", "kernel": 3}]))
    assert "layer 'c1' (conv2d)" in msg and "missing required attribute 'filters'" in msg


@pytest.mark.parametrize("attrs, needle", [
    ({"filters": 0, "kernel": 3}, "'filters' must be an integer >= 1, got 0"),
    ({"filters": 2.5, "kernel": 3}, "'filters'"),
    ({"filters": True, "kernel": 3}, "'filters'"),
    ({"filters": 2, "kernel": [3, 3, 3]}, "'kernel'"),
    ({"filters": 2, "kernel": 3, "stride": 0}, "'stride'"),
    ({"filters": 2, "kernel": 3, "padding": -1}, "'padding'"),
    ({"filters": 2, "kernel": 3, "padding": "full"}, "'padding'"),
    ({"filters": 2, "kernel": 3, "padding": [1, 2, 3]}, "'padding'"),
    ({"filters": 2, "kernel": 3, "bias": "yes"}, "'bias' must be true or false"),
    ({"filters": 2, "kernel": 3, "groups": 2}, "'groups' = 2 must divide"),
])
def test_bad_conv_attributes(attrs, needle):
    msg = load_error(model_dict([{"name": "conv", "op": "conv2d", **attrs}]))
    assert "layer 'conv' (conv2d)" in msg and needle in msg


def test_zero_output_size_prints_the_formula():
    with pytest.raises(ShapeError) as e:
        compiler.load(model_dict([{"name": "big", "op": "conv2d", "filters": 2, "kernel": 7}], shape=(1, 5, 5)))
    msg = str(e.value)
    assert "layer 'big' (conv2d)" in msg
    assert "(5 − 7 + 2·0)/1 + 1 = -1 ≤ 0" in msg


def test_pool_zero_output_size():
    with pytest.raises(ShapeError, match=re.escape("(3 − 4 + 2·0)/4 + 1 = 0 ≤ 0")):
        compiler.load(model_dict([{"name": "p", "op": "maxpool2d", "kernel": 4}], shape=(1, 3, 3)))


def test_pool_padding_must_be_smaller_than_the_window():
    msg = load_error(model_dict([{"name": "p", "op": "maxpool2d", "kernel": 2, "padding": 2}]))
    assert "'padding'" in msg and "layer 'p'" in msg


@pytest.mark.parametrize("layers, needle", [
    ([{"op": "relu", "inputs": ["nowhere"]}], "input 'nowhere' is not a layer"),
    ([{"name": "a", "op": "relu"}, {"name": "a", "op": "relu"}], "duplicate layer name 'a'"),
    ([{"name": "a", "op": "add", "inputs": ["x"]}], "needs two or more 'inputs'"),
    ([{"name": "a", "op": "relu", "inputs": ["x", "x"]}], "takes 1 input(s)"),
    ([{"name": "a", "op": "add", "inputs": ["x", "b"]}, {"name": "b", "op": "relu", "inputs": ["a"]}],
     "cycle"),
    ([{"name": "a", "op": "add", "inputs": ["x", "c"]},
      {"name": "c", "op": "conv2d", "filters": 5, "kernel": 1, "inputs": ["x"]}], "cannot broadcast"),
    ([{"name": "f", "op": "flatten"}, {"name": "c", "op": "conv2d", "filters": 2, "kernel": 1}],
     "C×H×W input"),
])
def test_graph_errors(layers, needle):
    msg = load_error(model_dict(layers))
    assert needle in msg


def test_unknown_top_level_key():
    assert "unknown top-level key(s) 'layer'" in load_error({"input": {"shape": [1, 4, 4]}, "layer": []})


def test_outputs_must_name_layers():
    assert "unknown layer(s) 'zz'" in load_error(model_dict([{"op": "relu"}], outputs=["zz"]))


def _write_model(tmp_path, weights: dict, layers=None):
    import yaml
    np.savez(tmp_path / "w.npz", **weights)
    desc = model_dict(layers or [{"name": "c", "op": "conv2d", "filters": 2, "kernel": 3}], shape=(1, 6, 6),
                      weights="w.npz")
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(desc))
    return tmp_path / "m.yaml"


def test_missing_weight(tmp_path):
    msg = load_error(_write_model(tmp_path, {"c.weight": np.zeros((2, 1, 3, 3), np.float32)}))
    assert "layer 'c' (conv2d)" in msg and "'c.bias'" in msg and "missing" in msg


def test_wrongly_shaped_weight(tmp_path):
    msg = load_error(_write_model(tmp_path, {"c.weight": np.zeros((2, 1, 5, 5)), "c.bias": np.zeros(2)}))
    assert "'c.weight' has shape [2, 1, 5, 5], expected [2, 1, 3, 3]" in msg


def test_extra_weight(tmp_path):
    msg = load_error(_write_model(tmp_path, {"c.weight": np.zeros((2, 1, 3, 3)), "c.bias": np.zeros(2),
                                             "d.weight": np.zeros(3)}))
    assert "no layer uses" in msg and "'d.weight'" in msg


def test_non_finite_weight(tmp_path):
    w = np.zeros((2, 1, 3, 3))
    w[0, 0, 0, 0] = np.nan
    assert "NaN" in load_error(_write_model(tmp_path, {"c.weight": w, "c.bias": np.zeros(2)}))


def test_pickled_weights_are_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    import zipfile
    with zipfile.ZipFile(tmp_path / "w.npz", "w") as z:
        z.write(tmp_path / "obj.npy", "c.weight.npy")
    import yaml
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(model_dict(
        [{"name": "c", "op": "conv2d", "filters": 2, "kernel": 3}], shape=(1, 6, 6), weights="w.npz")))
    assert "cannot read weights file" in load_error(tmp_path / "m.yaml")


def test_weights_path_may_not_escape(tmp_path):
    (tmp_path / "sub").mkdir()
    np.savez(tmp_path / "w.npz", x=np.zeros(1))
    import yaml
    (tmp_path / "sub" / "m.yaml").write_text(yaml.safe_dump(model_dict([{"op": "relu"}], weights="../w.npz")))
    assert "outside the description's folder" in load_error(tmp_path / "sub" / "m.yaml")


HOSTILE_NAMES = ['a"; system("x"); //', "*/ int evil; /*", "line\nbreak", "#include <stdio.h>", "ünï cödé ☃",
                 "??/", "x" * 5000, "a\\", "0starts_with_digit", "has space"]


def test_hostile_layer_names_build_and_run():
    layers = [{"name": n, "op": "relu" if i % 2 else "conv2d", **({} if i % 2 else {"filters": 2, "kernel": 1})}
              for i, n in enumerate(HOSTILE_NAMES)]
    desc = model_dict(layers, shape=(2, 4, 4))
    desc["input"]["name"] = 'in"put'
    graph = compiler.load(desc)
    source = compiler.generate_c(graph).code
    for n in HOSTILE_NAMES:
        if re.search(r"[^A-Za-z0-9_]", n) and n != "a\\":  # "a\" occurs in C anyway: ".balign 64\n"
            assert n not in source
    assert "system(" not in source and "#include <stdio.h>" not in source
    model = compiler.compile(graph)
    x = random_input((2, 4, 4))
    assert_close(model.run({'in"put': x})[HOSTILE_NAMES[-1]],
                 compiler.interpret(graph, {'in"put': x}, dtype=np.float64)[HOSTILE_NAMES[-1]])
