"""Rendering and building: a large model's kernels go to translation units of their own, which cc compiles in
parallel; the library computes the same bits as the one-file build, and every unit is -Wall -Wextra clean."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import compiler
import runtime
from compiler.codegen import KERNELS_PER_UNIT, unit_count
from compiler.errors import ConvcWarning
from runtime.build import build_library, compile_flags
from conftest import TARGETS, TARGET_IDS, runnable


def many_kernels(n: int) -> dict:
    """n conv + relu layers of distinct shapes: n kernel functions that no two layers share."""
    layers = [{"name": f"c{i}", "op": "conv2d", "filters": 8 + i, "kernel": 3, "padding": 1} for i in range(n)]
    return {"name": "many", "input": {"name": "x", "shape": [3, 9, 9]}, "layers": layers}


def test_unit_count():
    assert unit_count(KERNELS_PER_UNIT * 2 - 1, 2) == 0  # too few kernels for two units
    assert unit_count(KERNELS_PER_UNIT * 2, 2) == 2
    assert unit_count(KERNELS_PER_UNIT * 6, 4) == 4
    assert unit_count(100, 1) == 0  # one cc process: one file


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
def test_kernel_units_compute_what_the_one_file_build_computes(target, tmp_path):
    target = runnable(target)  # 16-lane kernels built for this machine's ISA where it lacks AVX-512
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvcWarning)
        graph = compiler.load(many_kernels(2 * KERNELS_PER_UNIT + 1))
    one = compiler.generate_c(graph, march=target, jobs=1)
    split = compiler.generate_c(graph, march=target, jobs=2)
    assert not one.units and sorted(split.units) == ["kernels_0.c", "kernels_1.c"]
    # model.c keeps no kernel bodies: it calls each kernel's hidden entry point in a unit
    assert "_body(" not in split.code and all("_body(" in unit for unit in split.units.values())
    x = np.random.default_rng(0).standard_normal((3, 3, 9, 9)).astype(np.float32)
    outputs = []
    for source in (one, split):
        result = build_library(source.code, source.files, flags=compile_flags(march=target.march),
                               cache_dir=tmp_path, units=source.units, open_library=runtime.load)
        record = json.loads(result.path.with_suffix(".json").read_text())
        assert record["warnings"] == ""  # every unit -Wall -Wextra clean
        outputs.append(result.opened(x))
    np.testing.assert_array_equal(outputs[0], outputs[1])
    ref = compiler.interpret(graph, {"x": x}, dtype=np.float64)[graph.outputs[0]]
    assert np.abs(outputs[1] - ref).max() <= 1e-5 * np.abs(ref).max()  # 17 convs deep: relative to the largest


def test_a_failing_unit_is_reported_with_its_source_kept(tmp_path):
    from runtime.errors import BuildError
    with pytest.raises(BuildError, match="the C compiler failed") as caught:
        build_library("int main_ok(void) { return 0; }\n", {}, cache_dir=tmp_path,
                      units={"kernels_0.c": "this is not C;\n"})
    log = caught.value.log_path
    assert log and "kernels_0.c" in open(log).read()
    assert list((tmp_path / "logs").glob("*.kernels_0.c"))
