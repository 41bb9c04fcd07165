"""Hostile names and hostile files: nothing from a model file reaches C except as a mangled identifier or a
number, and every malformed file is a clear ModelError."""
import json
import os
import re
import zipfile

import numpy as np
import pytest
import yaml

import compiler
from compiler import ModelError
from conftest import assert_close, lowered, model_dict, random_input
from fuzzing import HOSTILE_NAMES

C_TOKENS = ["system(", "#include <stdio.h>", "*/ int evil", "{{ fn }}", "{% raw %}", "%s%n", "\0", "??/"]


def hostile_description(names: list[str]) -> dict:
    """A DAG whose model, input, layers and outputs carry `names`: conv -> relu, a second branch, add, concat."""
    a, b, c, d, e, f = (names * 6)[:6]
    a, b, c, d, e, f = a, b + "\u200b1", c + "2", d + "3", e + "4", f + "5"  # distinct even when names repeat
    layers = [{"name": a, "op": "conv2d", "filters": 3, "kernel": 3, "padding": 1},
              {"name": b, "op": "relu"},
              {"name": c, "op": "conv2d", "filters": 3, "kernel": 1, "inputs": ["in\"put*/"]},
              {"name": d, "op": "add", "inputs": [b, c]},
              {"name": e, "op": "concat", "inputs": [d, a]},
              {"name": f, "op": "global_avgpool", "inputs": [e]}]
    desc = model_dict(layers, shape=(2, 6, 5), name=names[0], outputs=[f, d])
    desc["input"]["name"] = "in\"put*/"
    return desc


def check_c_is_clean(graph) -> str:
    code = compiler.generate_c(graph).code
    for token in C_TOKENS:
        assert token not in code, token
    assert code.isascii()
    for name in [graph.name, *graph.nx.nodes]:
        if re.search(r"[^A-Za-z0-9_ ]", name) and len(name) > 2:
            assert name not in code, name
    return code


def run_and_compare(graph, model):
    x = random_input(graph.shape(graph.inputs[0]), batch=2)
    got = model.run({graph.inputs[0]: x})
    ref = compiler.interpret(graph, {graph.inputs[0]: x}, dtype=np.float64)
    assert set(got) == set(graph.outputs)
    for name in graph.outputs:
        assert_close(got[name], ref[name])


@pytest.mark.parametrize("start", range(0, len(HOSTILE_NAMES), 5))
def test_hostile_names_everywhere_build_clean_and_run(start, tmp_path):
    names = (HOSTILE_NAMES[start:] + HOSTILE_NAMES)[:6]
    graph = compiler.load(hostile_description(names))
    check_c_is_clean(graph)
    model = compiler.compile(graph, cache_dir=tmp_path)
    assert json.loads(model.path.with_suffix(".json").read_text())["warnings"] == ""  # -Wall -Wextra clean
    # names survive exactly through the library's metadata
    assert model.name == graph.name and model.input_names == graph.inputs and model.output_names == graph.outputs
    run_and_compare(graph, model)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_hostile_names_through_description_files(tmp_path, suffix):
    desc = hostile_description(HOSTILE_NAMES[:6])
    path = tmp_path / f"model{suffix}"
    path.write_text(json.dumps(desc) if suffix == ".json" else yaml.safe_dump(desc, allow_unicode=True),
                    encoding="utf-8")
    graph = compiler.load(path)
    assert graph.name == desc["name"] and set(graph.outputs) == set(desc["outputs"])
    check_c_is_clean(graph)
    run_and_compare(graph, compiler.compile(graph))


def test_names_that_mangle_alike_stay_distinct():
    # a-b, a.b, a b and a_b all mangle to a_b; 40-character prefixes collide too.
    long = "n" * 60
    names = ["a-b", "a.b", "a b", "a_b", long + "1", long + "2"]
    layers = [{"name": n, "op": "leaky_relu", "negative_slope": 0.1 * (i + 1)} for i, n in enumerate(names)]
    graph = compiler.load(model_dict(layers, shape=(3,)))
    code = check_c_is_clean(graph)
    fns = re.findall(r"static void (L\d+_\w+)\(", code)
    assert len(fns) == len(set(fns)) == len(names)
    run_and_compare(graph, compiler.compile(graph))


def test_name_that_is_a_template_is_not_rendered():
    graph = compiler.load(model_dict([{"name": "{{ 7 * 7 }}", "op": "relu"}], shape=(3,), name="{{ 6 * 7 }}"))
    code = compiler.generate_c(graph).code
    assert "{{" not in code and "7 * 7" not in code and "6 * 7" not in code
    assert compiler.compile(graph).output_names == ["{{ 7 * 7 }}"]


# ---------------------------------------------------------------- hostile files
def load_error(path, **kw) -> str:
    with pytest.raises(ModelError) as e:
        compiler.load(path, **kw)
    assert str(path) in str(e.value)
    return str(e.value)


GOOD = model_dict([{"name": "c", "op": "conv2d", "filters": 2, "kernel": 3}, {"op": "relu"}], shape=(1, 6, 6))


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_every_truncation_of_a_description_is_a_result_or_a_clear_error(tmp_path, suffix):
    text = json.dumps(GOOD, indent=1) if suffix == ".json" else yaml.safe_dump(GOOD)
    path = tmp_path / f"m{suffix}"
    outcomes = set()
    for cut in range(len(text)):
        path.write_text(text[:cut])
        try:
            compiler.load(path)
            outcomes.add("ok")
        except ModelError as e:
            assert str(path) in str(e)
            outcomes.add("error")
    assert "error" in outcomes


@pytest.mark.parametrize("content, needle", [
    (b"\xff\xfe\x00garbage\x80", "cannot read"),  # not UTF-8
    (b"!!python/object/apply:os.system ['echo pwned']", "malformed YAML"),  # safe_load refuses code tags
    (b"input: !!python/name:os.system\nlayers: [{op: relu}]", "malformed YAML"),
    (b"[" * 100_000, "malformed YAML"),  # nesting deep enough to exhaust the recursion limit
    (b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
     b"input: {shape: *d}\nlayers: [{op: relu}]", "unknown top-level key"),  # alias bomb: refused unexpanded
    (b"input: {shape: [1, 4, 4]}\nlayers: [{op: relu}]\nlayers: [{op: tanh}]\n", None),
])
def test_hostile_yaml(tmp_path, content, needle):
    path = tmp_path / "m.yaml"
    path.write_bytes(content)
    if needle is None:  # duplicate keys: YAML keeps the last; still a valid model
        assert compiler.load(path).layer("tanh_1").op == "tanh"
        return
    assert needle in load_error(path)


def test_deeply_nested_json(tmp_path):
    path = tmp_path / "m.json"
    path.write_text("[" * 200_000 + "]" * 200_000)
    assert "malformed JSON" in load_error(path)


def _with_weights(tmp_path, npz_bytes: bytes, weights="w.npz"):
    (tmp_path / "w.npz").write_bytes(npz_bytes)
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({**GOOD, "weights": weights}))
    return path


def _good_npz(tmp_path) -> bytes:
    np.savez(tmp_path / "good.npz", **{"c.weight": np.ones((2, 1, 3, 3), np.float32),
                                       "c.bias": np.zeros(2, np.float32)})
    return (tmp_path / "good.npz").read_bytes()


def test_every_truncation_of_a_weights_file_is_a_clear_error(tmp_path):
    data = _good_npz(tmp_path)
    compiler.load(_with_weights(tmp_path, data))
    for cut in sorted({0, 1, 4, 30, 100, len(data) // 3, len(data) // 2, len(data) - 22, len(data) - 1}):
        assert "weights" in load_error(_with_weights(tmp_path, data[:cut]))


def test_weights_file_with_a_huge_claimed_array(tmp_path):
    """An .npy header may claim any shape; the data behind it is what counts."""
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1, 3000000000, 3), }"
    header += b" " * (118 - len(header)) + b"\n"
    npy = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\0" * 64
    with zipfile.ZipFile(tmp_path / "w.npz", "w") as z:
        z.writestr("c.weight.npy", npy)
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({**GOOD, "weights": "w.npz"}))
    assert "weights" in load_error(path)


def test_weights_file_that_is_not_a_zip(tmp_path):
    assert "cannot read weights file" in load_error(_with_weights(tmp_path, b"PK\x03\x04 not really a zip"))


@pytest.mark.parametrize("weights", ["/etc/passwd", "../outside.npz", "sub/../../outside.npz"])
def test_weights_path_may_not_leave_the_folder(tmp_path, weights):
    (tmp_path / "outside.npz").write_bytes(_good_npz(tmp_path))
    model_dir = tmp_path / "model"
    (model_dir / "sub").mkdir(parents=True)
    path = model_dir / "m.yaml"
    path.write_text(yaml.safe_dump({**GOOD, "weights": weights}))
    assert "outside the description's folder" in load_error(path)


def test_weights_symlink_out_of_the_folder_is_refused_unless_allowed(tmp_path):
    (tmp_path / "outside.npz").write_bytes(_good_npz(tmp_path))
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    os.symlink(tmp_path / "outside.npz", model_dir / "w.npz")
    path = model_dir / "m.yaml"
    path.write_text(yaml.safe_dump({**GOOD, "weights": "w.npz"}))
    assert "outside the description's folder" in load_error(path)
    graph = compiler.load(path, allow_outside_paths=True)
    assert np.all(graph.weights["c.weight"] == 1)


def test_templates_render_with_undefined_variables_as_errors():
    import jinja2
    from compiler.codegen import environment, render_kernels
    env = environment()
    with pytest.raises(jinja2.UndefinedError):
        env.from_string("int n = {{ missing }};").render()
    model = lowered(compiler.load(model_dict([{"name": "c", "op": "conv2d", "filters": 2, "kernel": 3}])),
                    opt_level=0)
    del model.kernels[0].context["K"]  # a kernel integer lowering forgot to compute
    with pytest.raises(jinja2.UndefinedError, match="K"):
        render_kernels(model, env)


@pytest.mark.parametrize("suffix", [".yaml", ".json", ".onnx"])
def test_description_that_is_a_device_or_a_fifo_is_refused_not_read_forever(tmp_path, suffix):
    os.symlink("/dev/zero", tmp_path / f"zero{suffix}")
    os.mkfifo(tmp_path / f"fifo{suffix}")
    (tmp_path / f"dir{suffix}").mkdir()
    for name in ("zero", "fifo", "dir"):
        assert "not a regular file" in load_error(tmp_path / f"{name}{suffix}")


def test_weights_zip_bomb_is_refused_before_unpacking(tmp_path):
    """A few kilobytes of compressed zeros claiming 800 MB: refused from the archive's directory."""
    import compiler.frontends.description as description
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (200000000,), }"
    header += b" " * (118 - len(header)) + b"\n"
    with zipfile.ZipFile(tmp_path / "w.npz", "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("c.weight.npy", "w", force_zip64=True) as member:
            member.write(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header)
            chunk = bytes(2**24)
            for _ in range(48):
                member.write(chunk)
    assert (tmp_path / "w.npz").stat().st_size < 2**21
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({**GOOD, "weights": "w.npz"}))
    msg = load_error(path, limits=compiler.Limits(max_weights=2**26))
    assert "unpacks to" in msg and "max_weights" in msg
    assert description.MAX_WEIGHTS_BYTES == compiler.Limits().max_weights_bytes


def test_hostile_file_and_cache_paths(tmp_path):
    """Paths never reach the C or a shell: quotes, spaces, $() and newlines in them are harmless."""
    folder = tmp_path / 'we"ird $(touch pwned) `id`\nname'
    folder.mkdir()
    path = folder / "m'odel.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    model = compiler.compile(path, cache_dir=folder / "cache 'dir'")
    x = random_input((1, 6, 6))
    graph = compiler.load(path)
    assert_close(model(x), compiler.interpret(graph, {"x": x}, dtype=np.float64)["relu_2"])
    assert not list(tmp_path.rglob("pwned"))
