"""Whole-tensor models: a model whose ops act across the batch axis (or whose input has no other axis) compiles
for its fixed shapes, as one tensor. Per-sample ops (conv, pools, dense, ...) then run on each index of the
leading axis; the rest act on the whole tensor. Checked against PyTorch (the interpreter) and the interpreter
(the compiled kernels, every opt level, both targets)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import compiler
from compiler.frontends.description import to_description
from conftest import TARGET_IDS, TARGETS, assert_close, runnable

BATCH = 4
ACROSS = {"name": "across", "batch": BATCH, "input": {"name": "x", "shape": [3, 6, 6]}, "seed": 2, "layers": [
    {"name": "c", "op": "conv2d", "filters": 8, "kernel": 3, "padding": 1},  # per sample, N = 4 times
    {"name": "r", "op": "relu"},
    {"name": "s", "op": "softmax", "axis": 0},  # across the batch
    {"name": "t", "op": "transpose", "perm": [1, 0, 2, 3]},  # 8×4×6×6: the batch is now axis 1
    {"name": "p", "op": "maxpool2d", "kernel": 2},  # per "sample" of the new leading axis: 8 times
    {"name": "cat", "op": "concat", "axis": 0, "inputs": ["p", "p"]},  # 16×4×3×3
    {"name": "f", "op": "flatten"},  # 16×36
    {"name": "d", "op": "dense", "units": 5}]}  # 16×5


def torch_reference(graph, x):
    w = {k: torch.from_numpy(v.astype(np.float64)) for k, v in graph.weights.items()}
    t = F.conv2d(torch.from_numpy(x.astype(np.float64)), w["c.weight"], w["c.bias"], padding=1).relu()
    t = F.max_pool2d(t.softmax(0).permute(1, 0, 2, 3), 2)
    t = torch.flatten(torch.cat([t, t], 0), 1)
    return F.linear(t, w["d.weight"], w["d.bias"]).numpy()


def test_a_description_with_a_fixed_batch_is_a_whole_tensor_model():
    graph = compiler.load(ACROSS)
    assert not graph.batched and graph.shape("x") == (BATCH, 3, 6, 6) and graph.shape("d") == (16, 5)
    assert graph.repeats("c") == BATCH and graph.repeats("p") == 8 and graph.repeats("s") == 1
    x = np.random.default_rng(0).standard_normal((BATCH, 3, 6, 6)).astype(np.float32)
    ref = compiler.interpret(graph, {"x": x}, dtype=np.float64)["d"]
    np.testing.assert_allclose(ref, torch_reference(graph, x), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("opt_level", [0, 1, 2])
def test_whole_tensor_models_compile_at_every_level(opt_level, target):
    graph = compiler.load(ACROSS)
    model = compiler.compile(graph, opt_level=opt_level, march=runnable(target), threads=2)
    x = np.random.default_rng(1).standard_normal((BATCH, 3, 6, 6)).astype(np.float32)
    y = model(x)
    assert y.shape == (16, 5) and not model.batched
    assert_close(y, compiler.interpret(graph, {"x": x}, dtype=np.float64)["d"])


def test_a_whole_tensor_model_takes_exactly_its_shapes():
    model = compiler.compile(ACROSS)
    assert "x [4, 3, 6, 6]" in repr(model)
    for shape in [(3, 3, 6, 6), (1, BATCH, 3, 6, 6), (BATCH * 2, 3, 6, 6)]:
        with pytest.raises(ValueError, match=r"expected shape \[4, 3, 6, 6\] exactly"):
            model(np.zeros(shape, np.float32))
    with pytest.raises(ValueError, match="exactly"):
        compiler.interpret(compiler.load(ACROSS), {"x": np.zeros((1, BATCH, 3, 6, 6))})


def test_without_a_fixed_batch_an_op_across_it_is_an_error_with_the_fix():
    batched = {**ACROSS}
    del batched["batch"]
    with pytest.raises(compiler.BatchAxisError, match=r"layer 's' \(softmax\).*'axis' = 0.*batch: N"):
        compiler.load(batched)


def test_the_layer_debugger_and_the_summary_read_whole_tensor_models():
    from compiler.debug import check_layers
    report = check_layers(ACROSS)  # opt level 2: c and r are one fused layer
    assert report.ok and [r.sources for r in report.rows][:2] == [("c", "r"), ("s",)] and len(report.rows) == 7
    assert report.rows[0].kernel and report.rows[0].shape == (BATCH, 8, 6, 6)
    summary = compiler.load(ACROSS).summary()
    rows = {r.name: r for r in summary.rows}
    assert rows["c"].shape == (BATCH, 8, 6, 6) and rows["c"].macs == BATCH * 8 * 6 * 6 * 3 * 9


def test_convert_writes_the_fixed_batch_back():
    graph = compiler.load(ACROSS)
    desc = to_description(graph, "w.npz")
    assert desc["batch"] == BATCH and desc["input"]["shape"] == [3, 6, 6]
    again = compiler.load({k: v for k, v in desc.items() if k != "weights"})
    assert again.shape("d") == graph.shape("d") and not again.batched


def test_the_standalone_library_runs_a_whole_tensor_model(tmp_path):
    import subprocess
    from compiler.emit import emit_c
    from runtime.build import default_cc
    graph = compiler.load(ACROSS)
    emit_c(graph, tmp_path, march=None)
    exe = tmp_path / "example" / "prog"
    subprocess.run([default_cc(), "-std=c99", "-O2", f"-I{tmp_path}", "-o", str(exe), str(tmp_path / "example" / "main.c"),
                    str(tmp_path / "model.c"), "-lm"], check=True, capture_output=True)
    x = np.random.default_rng(3).standard_normal((BATCH, 3, 6, 6)).astype(np.float32)
    (tmp_path / "in.bin").write_bytes(x.tobytes())
    subprocess.run([str(exe), str(tmp_path / "in.bin"), str(tmp_path / "out.bin")], check=True, capture_output=True)
    y = np.fromfile(tmp_path / "out.bin", np.float32).reshape(16, 5)
    assert_close(y, compiler.interpret(graph, {"x": x}, dtype=np.float64)["d"])
