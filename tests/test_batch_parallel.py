"""A batch's samples run in parallel, one per thread, each in its own arena slot.

Every batch size (below, at and above the thread count, with a remainder that runs layer-parallel)
must give the interpreter's answer and the very same bits as one sample at a time.
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import compiler
from conftest import EXAMPLES, assert_close, model_dict, random_input

# Two outputs, one of them a view of an arena tensor (copied out per sample), one a branch mid-network.
TWO_OUTPUTS = model_dict([
    {"op": "conv2d", "name": "c1", "filters": 8, "kernel": 3, "padding": 1},
    {"op": "relu", "name": "r1"},
    {"op": "conv2d", "name": "c2", "filters": 8, "kernel": 3, "padding": 1},
    {"op": "add", "name": "sum", "inputs": ["c2", "r1"]},
    {"op": "flatten", "name": "flat", "inputs": ["sum"]},
    {"op": "dense", "name": "fc", "units": 5},
], shape=(3, 12, 12), outputs=["fc", "flat"])


@pytest.fixture(scope="module")
def models():
    return {"resnet_small": compiler.compile(EXAMPLES / "resnet_small.yaml"),
            "two_outputs": compiler.compile(TWO_OUTPUTS)}


@pytest.mark.parametrize("name", ["resnet_small", "two_outputs"])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_every_batch_size_matches_one_sample_at_a_time(models, name, threads):
    model = models[name]
    model.set_threads(threads)
    try:
        (in_name, shape), = model.input_shapes.items()
        x = random_input(shape, batch=7, seed=threads)
        singles = [model.run({in_name: x[i:i + 1]}) for i in range(7)]
        graph = compiler.load(EXAMPLES / "resnet_small.yaml" if name == "resnet_small" else TWO_OUTPUTS)
        ref = compiler.interpret(graph, {in_name: x}, dtype=np.float64)
        for batch in range(1, 8):
            got = model.run({in_name: x[:batch]})
            for out in model.output_names:
                alone = np.concatenate([s[out] for s in singles[:batch]])
                assert np.array_equal(got[out], alone), f"batch {batch}, {threads} threads: {out} differs"
                assert_close(got[out], ref[out][:batch])
    finally:
        model.set_threads(None)


def test_concurrent_batched_calls_keep_their_own_arenas(models):
    """Python threads each running a batch (itself split across the pool) never share scratch."""
    model = models["resnet_small"]
    model.set_threads(2)
    try:
        shape = model.input_shapes["image"]
        inputs = [random_input(shape, batch=2 + i % 4, seed=100 + i) for i in range(16)]
        serial = [model(x) for x in inputs]
        with ThreadPoolExecutor(4) as pool:
            parallel = list(pool.map(model, inputs))
        for i, (a, b) in enumerate(zip(serial, parallel)):
            assert np.array_equal(a, b), f"call {i} differs when four Python threads call at once"
    finally:
        model.set_threads(None)


def test_a_profiling_build_runs_samples_one_after_another():
    """Layer times stay per layer: every layer of every sample is counted once."""
    model = compiler.compile(EXAMPLES / "lenet5.yaml", profile=True)
    model.set_threads(2)
    x = random_input(model.input_shapes["image"], batch=4)
    reference = compiler.interpret(compiler.load(EXAMPLES / "lenet5.yaml"), {"image": x}, dtype=np.float64)
    model.profile(reset=True)
    assert_close(model(x), reference[model.output_names[0]])
    assert all(seconds > 0 for seconds in model.profile().values())
