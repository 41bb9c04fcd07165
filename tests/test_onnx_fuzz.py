"""Bounded ONNX mutation fuzzing (scripts/onnx_fuzz.py runs the long campaigns).

Real models (the examples converted to ONNX, one with external data, and two light models from the onnx
package) mutated at the protobuf level: every outcome must be a result matching onnxruntime or the
interpreter, or a ModelError/ShapeError naming the file and what in it is wrong (onnx_fuzzing.run_case).
The cases are fixed by their numbers, so CI is reproducible.
"""
import collections
import faulthandler

import numpy as np
import onnx
import pytest
from onnx import helper

import compiler
from conftest import EXAMPLES as EXAMPLE_DIR
from onnx_fuzzing import EXAMPLES, EXTERNAL, MUTATIONS, OrtWorker, example_to_onnx, load_seed, run_case

CASES = {**{name: 60 for name in EXAMPLES}, EXTERNAL: 60, "squeezenet": 12, "shufflenet": 8}
HANG_SECONDS = 300


@pytest.fixture(scope="module")
def ort():
    worker = OrtWorker()
    yield worker
    worker.close()


def test_mutated_models_give_results_or_errors_naming_what_is_wrong(tmp_path, ort):
    counts: collections.Counter[str] = collections.Counter()
    kinds: collections.Counter[str] = collections.Counter()
    failures = []
    for name, n in CASES.items():
        seed = load_seed(name)
        for i in range(n):
            faulthandler.dump_traceback_later(HANG_SECONDS, exit=True)
            try:
                outcome = run_case(seed, 15_000 + i, tmp_path / "case", ort)
            finally:
                faulthandler.cancel_dump_traceback_later()
            counts[outcome.name] += 1
            kinds.update(m.split(":")[0] for m in outcome.mutations)
            if outcome.name == "FAIL":
                failures.append((name, 15_000 + i, outcome.mutations, outcome.detail[:2000]))
    assert not failures, "\n\n".join(map(str, failures[:5]))
    total = sum(CASES.values())
    ok = sum(v for k, v in counts.items() if k.startswith("ok"))
    # Both paths must be exercised, and every mutation tried, or the run proves little.
    assert ok >= total // 20 and counts["ok-ort"] >= 5, dict(counts)
    assert counts["ModelError"] >= total // 2, dict(counts)
    assert set(kinds) >= set(MUTATIONS) - {"external_data_lies"} and kinds["external_data_lies"], dict(kinds)
    print(dict(counts))


def test_the_converted_examples_match_onnxruntime(tmp_path, ort):
    """The unmutated seeds are right, so an 'ok' of a mutant means something."""
    for name in EXAMPLES:
        path = tmp_path / f"{name}.onnx"
        onnx.save(example_to_onnx(name), path)
        graph = compiler.load(path)
        x = np.random.default_rng(0).standard_normal((2, *graph.shape(graph.inputs[0]))).astype(np.float32)
        status, value = ort.run(path, {graph.inputs[0]: x})
        assert status == "ok", value
        np.testing.assert_allclose(compiler.compile(graph)(x), value[0], rtol=1e-3, atol=1e-4)
        native = compiler.load(EXAMPLE_DIR / f"{name}.yaml")
        ref = compiler.interpret(native, {native.inputs[0]: x})[native.outputs[0]]
        np.testing.assert_allclose(value[0], ref, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("attribute, value, message", [
    ("kernel_shape", 1.5, "attribute 'kernel_shape' is FLOAT; Conv takes INTS"),
    ("strides", ["a", "b"], "attribute 'strides' is STRINGS; Conv takes INTS"),
    ("colour", 3, "Conv (opset 11) has no attribute 'colour'"),
])
def test_attribute_of_the_wrong_type_names_the_node(tmp_path, attribute, value, message):
    model = example_to_onnx("lenet5")
    conv = model.graph.node[0]
    kept = [a for a in conv.attribute if a.name != attribute]
    del conv.attribute[:]
    conv.attribute.extend(kept + [helper.make_attribute(attribute, value)])
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    with pytest.raises(compiler.ModelError) as e:
        compiler.load(path)
    assert str(path) in str(e.value) and "node 'conv1' (Conv)" in str(e.value) and message in str(e.value)


def test_external_data_that_lies_about_its_length(tmp_path):
    seed = load_seed(EXTERNAL)
    init = seed.model.graph.initializer[0]
    for entry in init.external_data:
        if entry.key == "length":
            entry.value = str(2**63 - 1)
    (tmp_path / "weights.bin").write_bytes(seed.external)
    path = tmp_path / "m.onnx"
    path.write_bytes(seed.model.SerializeToString())
    with pytest.raises(compiler.ModelError, match=f"tensor '{init.name}': external data 'weights.bin' has "):
        compiler.load(path)
