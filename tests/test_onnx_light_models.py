"""The 9 "light" real-architecture models shipped inside the onnx package (onnx/backend/test/data/light):
each compiles with convc and matches its reference output.

onnx's backend runner feeds these models a deterministic input (arange(n)/n in the input's shape,
Runner.generate_dummy_data with random=False) and compares with light_<model>_output_0.pb; so does this test,
with the runner's tolerances.
"""
import os
import time
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import numpy_helper  # noqa: E402

import compiler  # noqa: E402
from compiler.errors import ConvcWarning  # noqa: E402

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
MODELS = ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet", "squeezenet",
          "vgg19", "zfnet512"]
RTOL, ATOL = 1e-3, 1e-7  # onnx.backend.test's defaults for model tests


def dummy_input(shape) -> np.ndarray:
    """The runner's non-random dummy data: arange(n)/n."""
    n = int(np.prod(shape))
    return (np.arange(n).reshape(shape) / n).astype(np.float32)


def run_light_model(name: str) -> dict:
    """Compile one light model and compare it with its reference output; returns the measurements."""
    path = os.path.join(LIGHT, f"light_{name}.onnx")
    ref = numpy_helper.to_array(onnx.load_tensor(os.path.join(LIGHT, f"light_{name}_output_0.pb")))
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvcWarning)
        graph = compiler.load(path)
        lib = compiler.compile(graph)
    compile_seconds = time.perf_counter() - start
    x = dummy_input((1, *graph.shape(graph.inputs[0])))
    start = time.perf_counter()
    got = lib(x)
    run_seconds = time.perf_counter() - start
    got = got.reshape(ref.shape)
    return {"got": got, "ref": ref, "max_abs_error": float(np.abs(got - ref).max()),
            "compile_seconds": compile_seconds, "run_seconds": run_seconds, "cache_hit": lib.build_info.cache_hit,
            "layers": len(graph.layers())}


@pytest.mark.parametrize("name", MODELS)
def test_light_model(name):
    result = run_light_model(name)
    np.testing.assert_allclose(result["got"], result["ref"], rtol=RTOL, atol=ATOL)
