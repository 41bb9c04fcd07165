"""Property tests for the tensor ops: broadcasting agrees with NumPy's rule, and random chains of
transpose / pad / reshape / element-wise ops with constants / prelu / lrn / softmax / concat along any
axis compile to exactly what the interpreter computes.

Shapes are tracked here with NumPy's own functions (np.broadcast_shapes, np.transpose, np.pad on a
zero array), not convc's rules. Derandomized and small, so the run is reproducible and cached.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import compiler
from conftest import assert_close, model_dict

SETTINGS = settings(deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
BINARY = ["add", "sub", "mul", "div", "max", "min", "pow"]


def shapes(min_rank=1, max_rank=4, max_dim=5):
    return st.lists(st.integers(1, max_dim), min_size=min_rank, max_size=max_rank).map(tuple)


@st.composite
def broadcast_partner(draw, shape):
    """A shape that broadcasts with `shape`: some leading axes dropped, some axes set to 1."""
    drop = draw(st.integers(0, len(shape) - 1))
    return tuple(1 if draw(st.booleans()) else d for d in shape[drop:])


# ---------------------------------------------------------------- broadcasting == NumPy's rule
@settings(SETTINGS, max_examples=300)
@given(shapes(), shapes(), st.sampled_from(BINARY))
def test_broadcast_shape_and_errors_match_numpy(a, b, op):
    desc = model_dict([{"name": "k", "op": "constant", "shape": list(b)},
                       {"name": "y", "op": op, "inputs": ["x", "k"]}], shape=a)
    try:
        want = np.broadcast_shapes(a, b)
    except ValueError:
        with pytest.raises(compiler.ShapeError, match="cannot broadcast"):
            compiler.load(desc)
    else:
        assert compiler.load(desc).shape("y") == want


# ---------------------------------------------------------------- random chains, compiled == interpreter
# Hypothesis draws the rank, the length and a seed; the layers come from NumPy's generator with that seed, so
# that even hypothesis's smallest examples have non-trivial ops, perms, pads and shapes.
KINDS = ["transpose", "pad", "reshape", "binary", "binary", "prelu", "lrn", "softmax", "concat", "identity"]


def tensor_layer(kind: str, rng: np.random.Generator, shape: tuple, name: str):
    """One layer of `kind` valid on `shape` (plus the layers it needs) and its output shape, computed with NumPy."""
    rank = len(shape)
    if kind == "transpose":  # perm counts the batch as axis 0, which stays first
        perm = [int(p) for p in rng.permutation(rank)]
        return [{"name": name, "op": "transpose", "perm": [0] + [p + 1 for p in perm]}], \
            np.zeros(shape).transpose(perm).shape
    if kind == "pad":
        pads = [int(p) for p in rng.integers(0, 3, size=2 * rank)]
        value = float(rng.choice([0.0, -1.5, 2.0]))
        out = np.pad(np.zeros(shape), list(zip(pads[:rank], pads[rank:]))).shape
        return [{"name": name, "op": "pad", "pads": pads, "value": value}], out
    if kind == "reshape":
        n = int(np.prod(shape))
        first = int(rng.choice([d for d in range(1, n + 1) if n % d == 0]))
        target = [[first, -1], [-1], [n // first, first], [1, n], [first, 1, -1]][int(rng.integers(5))]
        return [{"name": name, "op": "reshape", "shape": target}], np.zeros(n).reshape(target).shape
    if kind == "binary":
        op = str(rng.choice(BINARY))
        drop = int(rng.integers(0, rank))
        other = tuple(1 if rng.random() < 0.5 else d for d in shape[drop:])
        const = {"name": f"{name}_k", "op": "constant", "shape": list(other)}
        if op == "div":  # keep the divisor away from 0
            positive = {"name": f"{name}_p", "op": "sigmoid", "inputs": [const["name"]]}
            return [const, positive, {"name": name, "op": op, "inputs": ["_prev", positive["name"]]}], \
                np.broadcast_shapes(shape, other)
        if op == "pow":  # and the base positive
            base = {"name": f"{name}_b", "op": "sigmoid", "inputs": ["_prev"]}
            return [const, base, {"name": name, "op": op, "inputs": [base["name"], const["name"]]}], \
                np.broadcast_shapes(shape, other)
        inputs = ["_prev", const["name"]][::int(rng.choice([1, -1]))]
        return [const, {"name": name, "op": op, "inputs": inputs}], np.broadcast_shapes(shape, other)
    if kind == "prelu":
        return [{"name": name, "op": "prelu", "num_parameters": int(rng.choice([1, shape[0]]))}], shape
    if kind == "lrn":
        return [{"name": name, "op": "lrn", "size": int(rng.integers(1, 7)),
                 "alpha": float(rng.choice([1e-4, 0.1, 1.0]))}], shape
    if kind == "softmax":  # an axis of N×shape other than the batch (0 and -rank-1)
        return [{"name": name, "op": "softmax", "axis": int(rng.choice([*range(1, rank + 1), *range(-rank, 0)]))}], shape
    if kind == "concat":
        axis, times = int(rng.choice([*range(1, rank + 1), *range(-rank, 0)])), int(rng.integers(2, 4))
        out = np.concatenate([np.zeros((1, *shape))] * times, axis=axis).shape[1:]
        return [{"name": name, "op": "concat", "axis": axis, "inputs": ["_prev"] * times}], out
    return [{"name": name, "op": "identity"}], shape


@st.composite
def chains(draw):
    rank = draw(st.sampled_from([3, 2, 4, 1]))  # most CNN-like first: hypothesis favours early choices
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = tuple(int(d) for d in rng.integers(1, 6, size=rank))
    in_shape, layers, prev = shape, [], "x"
    for i in range(draw(st.sampled_from([3, 4, 2, 1]))):
        new, new_shape = tensor_layer(str(rng.choice(KINDS)), rng, shape, f"t{i}")
        if int(np.prod(new_shape)) > 4096:
            break
        shape = tuple(new_shape)
        for layer in new:
            if "inputs" in layer:
                layer["inputs"] = [prev if s == "_prev" else s for s in layer["inputs"]]
            elif layer["op"] != "constant":
                layer["inputs"] = [prev]
        layers += new
        prev = new[-1]["name"]
    if not layers:
        layers, prev, shape = [{"name": "t0", "op": "identity", "inputs": ["x"]}], "t0", in_shape
    return model_dict(layers, shape=in_shape, name="chain", outputs=[prev],
                      seed=draw(st.integers(0, 2**16))), tuple(shape)


@settings(SETTINGS, max_examples=50)
@given(chains(), st.integers(1, 3), st.integers(0, 100))
def test_random_tensor_op_chain_compiles_to_the_interpreter(desc_and_shape, batch, seed):
    desc, shape = desc_and_shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", compiler.ConvcWarning)
        graph = compiler.load(desc)
    (out,) = graph.outputs
    assert graph.shape(out) == shape
    model = compiler.compile(graph)
    x = np.random.default_rng(seed).standard_normal((batch, *graph.shape("x"))).astype(np.float32)
    got = model.run({"x": x})[out]
    ref = compiler.interpret(graph, {"x": x}, dtype=np.float64)[out]
    assert np.all(np.isfinite(ref))
    assert_close(got, ref)
