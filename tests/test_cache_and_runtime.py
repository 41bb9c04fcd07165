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


@pytest.mark.parametrize("floats", [1, 100, 100_003, 524_288, 3_000_001])
def test_scratch_is_aligned_writable_float32(floats):
    """runtime.scratch: 64-byte aligned always, 2 MB aligned (huge pages advised) from 2 MB on where the platform
    has MADV_HUGEPAGE; a plain C-contiguous float32 array either way."""
    import mmap
    from runtime.scratch import HUGE_PAGE, scratch
    a = scratch(floats)
    assert a.dtype == np.float32 and a.shape == (floats,) and a.flags.c_contiguous and a.flags.writeable
    assert a.ctypes.data % 64 == 0
    if 4 * floats >= HUGE_PAGE and hasattr(mmap, "MADV_HUGEPAGE"):
        assert a.ctypes.data % HUGE_PAGE == 0
    a[:] = 3.0
    assert float(a[-1]) == 3.0 and float(a.sum()) == 3.0 * floats


def test_the_arena_a_call_runs_on_is_aligned():
    """NumPy puts a large array 16 bytes past a page; the arena (runtime.scratch) starts on a cache line, so the
    memory planner's 64-byte offsets are 64-byte addresses, and an arena of 2 MB or more on a huge page."""
    import mmap
    from runtime.scratch import HUGE_PAGE
    layers = [{"name": "c", "op": "conv2d", "filters": 9, "kernel": 3, "padding": 1}, {"op": "relu"},
              {"name": "d", "op": "conv2d", "filters": 2, "kernel": 1}]
    model = compiler.compile(model_dict(layers, shape=(2, 256, 256)))
    assert 4 * model.arena_floats >= HUGE_PAGE
    x = random_input((2, 256, 256))
    want = model(x)
    (arena,) = model._arenas
    assert arena.ctypes.data % 64 == 0
    if hasattr(mmap, "MADV_HUGEPAGE"):
        assert arena.ctypes.data % HUGE_PAGE == 0
    np.testing.assert_array_equal(model(x), want)  # the arena reused
    assert model._arenas[0] is arena
