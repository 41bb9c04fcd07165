"""The content-hash cache, and the runtime on its own (no compiler import)."""
import os
import subprocess
import sys

import numpy as np
import pytest

import compiler
import runtime
from conftest import EXAMPLES, ROOT, model_dict, random_input


def small():
    return model_dict([{"name": "c", "op": "conv2d", "filters": 2, "kernel": 3}, {"op": "relu"}], shape=(1, 6, 6))


def test_second_compile_is_a_cache_hit(tmp_path):
    a = compiler.compile(small(), cache_dir=tmp_path)
    b = compiler.compile(small(), cache_dir=tmp_path)
    assert not a.build_info.cache_hit and b.build_info.cache_hit
    assert a.path == b.path


def test_changed_weight_is_a_miss(tmp_path):
    graph = compiler.load(small())
    first = compiler.compile(graph, cache_dir=tmp_path)
    graph.weights["c.weight"] = graph.weights["c.weight"].copy()
    graph.weights["c.weight"][0, 0, 0, 0] += 1.0
    second = compiler.compile(graph, cache_dir=tmp_path)
    assert not second.build_info.cache_hit and second.path != first.path
    x = random_input((1, 6, 6))
    assert not np.allclose(first(x), second(x))


def test_changed_flags_are_a_miss(tmp_path):
    compiler.compile(small(), cache_dir=tmp_path)
    assert not compiler.compile(small(), cache_dir=tmp_path, cflags=["-fno-fast-math"]).build_info.cache_hit


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVC_CACHE_DIR", str(tmp_path / "c"))
    model = compiler.compile(small())
    assert model.path.parent == tmp_path / "c"


def test_saved_library_reloads_without_the_compiler(tmp_path):
    model = compiler.compile(EXAMPLES / "lenet5.yaml")
    so = model.save(tmp_path / "lenet.so")
    x = random_input((1, 28, 28), batch=2)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "want.npy", model(x))
    code = ("import sys, numpy as np, runtime; m = runtime.load(sys.argv[1]); "
            "y = m(np.load(sys.argv[2])); assert 'compiler' not in sys.modules; "
            "assert np.array_equal(y, np.load(sys.argv[3])); print(m)")
    proc = subprocess.run([sys.executable, "-c", code, str(so), str(tmp_path / "x.npy"), str(tmp_path / "want.npy")],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert "lenet5" in proc.stdout


def test_metadata_round_trip():
    model = compiler.compile(EXAMPLES / "resnet_small.yaml")
    assert model.input_names == ["image"] and model.output_names == ["probs"]
    assert model.metadata["dtype"] == "float32" and model.metadata["convc_version"] == runtime.__version__
    assert model.arena_floats > 0


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 1, 6, 6), np.float64), "expected dtype float32, got float64"),
    (np.zeros((2, 1, 6, 7), np.float32), "expected shape [N, 1, 6, 6], got [2, 1, 6, 7]"),
    (np.zeros((1, 6, 6), np.float32), "expected shape [N, 1, 6, 6], got [1, 6, 6]"),
    (np.zeros((0, 1, 6, 6), np.float32), "at least 1"),
    (np.zeros((2, 1, 6, 12), np.float32)[:, :, :, ::2], "C-contiguous"),
    ([[0.0]], "numpy.ndarray"),
])
def test_call_time_validation(bad, message):
    model = compiler.compile(small())
    with pytest.raises(ValueError) as e:
        model(bad)
    assert message in str(e.value)


def test_run_by_name_validates_names():
    model = compiler.compile(small())
    with pytest.raises(ValueError, match="missing"):
        model.run({"image": random_input((1, 6, 6))})
    out = model.run({"x": random_input((1, 6, 6))})
    assert set(out) == {"relu_2"}


def test_pickle_carries_the_library():
    import pickle
    model = compiler.compile(small())
    clone = pickle.loads(pickle.dumps(model))
    x = random_input((1, 6, 6))
    np.testing.assert_array_equal(clone(x), model(x))
