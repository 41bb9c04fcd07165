"""Shared test helpers: one compiled-library cache per checkout, the comparison tolerances, and the targets
kernel tests state."""
import dataclasses
import math
import os
from pathlib import Path

import numpy as np
import pytest

from compiler.target import Target
from runtime.cpu import missing_isa

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
# Compiled libraries are cached across tests (and xdist workers) by content hash.
os.environ.setdefault("CONVC_CACHE_DIR", str(ROOT / ".test-cache"))

# float32 compiled kernels vs. the float64 NumPy interpreter.
RTOL, ATOL = 1e-4, 1e-5

# The two x86 targets every kernel test covers, whatever this machine is (CI may run on either kind).
AVX2 = Target.from_march("x86-64-v3")  # 8 lanes, 16 vector registers
AVX512 = Target.from_march("x86-64-v4")  # 16 lanes, 32 vector registers
TARGETS = (AVX2, AVX512)
TARGET_IDS = ("avx2", "avx512")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true",
                     help="also run the tests marked slow (the whole torchvision zoo at full size)")


def pytest_collection_modifyitems(config, items):
    """Tests marked slow are deselected (not skipped) unless --runslow is given or -m names them."""
    if config.getoption("--runslow") or "slow" in (config.getoption("markexpr") or ""):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


def host_lacks(target: Target) -> list[str]:
    """The instruction-set extensions of `target` that this machine does not have ([] if it runs its code)."""
    return missing_isa(target.features)


def kernel_plan(graph, target: Target = AVX512, opt_level: int = 2, kernels=None):
    """(the optimized graph, its KernelPlan) for `target` at `opt_level`."""
    from compiler.kernels.select import select_kernels
    from compiler.passes import optimize

    optimized = optimize(graph, opt_level)
    return optimized, select_kernels(optimized, target, opt_level, kernels)


def lowered(graph, target: Target = AVX512, opt_level: int = 2, kernels=None):
    """The LoweredModel of `graph` (optimized at `opt_level`, kernels chosen for `target`)."""
    from compiler.lower import lower
    from compiler.memory import plan_memory

    optimized, plan = kernel_plan(graph, target, opt_level, kernels)
    return lower(optimized, plan, plan_memory(optimized, plan))


def runnable(target: Target) -> Target:
    """`target`'s kernels (lanes, registers, caches: the same C) built so this machine runs them: where the
    machine lacks the target's ISA, cc gets this machine's -march instead, and GCC's vector extensions split
    the wide vectors. So 16-lane kernels are checked on an AVX2 machine too (their speed is not)."""
    if not host_lacks(target):
        return target
    return dataclasses.replace(target, march=Target.from_march("native").march)


def needs_isa(target: Target) -> None:
    """Skip the rest of a test that must run `target`'s own instructions on a machine without them."""
    missing = host_lacks(target)
    if missing:
        pytest.skip(f"this machine lacks {', '.join(missing)} for {target.name}; its C was generated and compiled, "
                    "the run is skipped")


def assert_close(got: np.ndarray, ref: np.ndarray, rtol: float = RTOL, atol: float = ATOL) -> None:
    assert got.shape == ref.shape, f"shape {got.shape} != {ref.shape}"
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol)


def random_input(shape, batch: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, *shape)).astype(np.float32)


def model_dict(layers, shape=(3, 8, 8), name="m", **extra) -> dict:
    """A description dict with input 'x' of per-sample `shape`."""
    return {"name": name, "input": {"name": "x", "shape": list(shape)}, "layers": layers, **extra}


def compile_and_check(graph, batch: int = 2, seed: int = 0, finite: bool = True, **compile_kw):
    """Compile `graph`, run it on a random batch, and check every output matches the float64
    interpreter (and, with `finite`, is finite). Returns (model, outputs, reference outputs)."""
    import compiler

    if isinstance(compile_kw.get("march"), Target):
        compile_kw["march"] = runnable(compile_kw["march"])
    model = compiler.compile(graph, **compile_kw)
    x = random_input(graph.shape(graph.inputs[0]), batch, seed)
    got = model.run({graph.inputs[0]: x})
    ref = compiler.interpret(graph, {graph.inputs[0]: x}, dtype=np.float64)
    for name in graph.outputs:
        if finite:
            assert np.all(np.isfinite(got[name])), name
        assert_close(got[name], ref[name])
    return model, got, ref


@pytest.fixture
def compile_and_compare():
    """Compile a description, run it on a random batch, and compare every output with the interpreter."""
    import compiler

    def run(description, batch: int = 2, seed: int = 0, **compile_kw):
        graph = compiler.load(description)
        model, got, ref = compile_and_check(graph, batch, seed, finite=False, **compile_kw)
        return graph, model, got, ref
    return run


def out_size(size: int, kernel: int, stride: int, dilation: int, lo: int, hi: int, ceil_mode: bool = False) -> int:
    """PyTorch's documented output size per axis (torch.nn.Conv2d / MaxPool2d), with its ceil_mode rule.

    An oracle written from PyTorch's docs, independent of convc's conv_output_size.
    """
    num = size + lo + hi - dilation * (kernel - 1) - 1
    out = (math.ceil(num / stride) if ceil_mode else num // stride) + 1  # ceil_mode rounds up even below 0
    if ceil_mode and (out - 1) * stride >= size + lo:
        out -= 1
    return max(out, 0)
