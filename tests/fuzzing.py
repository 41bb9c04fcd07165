"""Random model descriptions, valid and deliberately broken, and the one allowed set of outcomes.

Used by tests/test_fuzz.py (bounded, in CI) and scripts/fuzz.py (long runs). `run_description` sends a
description through compiler.load -> compiler.compile -> call and returns the outcome's name: "ok" (the
compiled result matched the interpreter) or the name of a documented convc exception (ALLOWED_ERRORS).
Anything else -- another exception type, a mismatch -- propagates; a segfault kills the process.
"""
from __future__ import annotations

import copy
import os
import warnings
from typing import Any

import numpy as np
from hypothesis import strategies as st

import compiler
from compiler import BuildError, ConvcWarning, LibraryError, ModelError, ShapeError
from compiler.passes import PIPELINES

# The documented exceptions a model file may cause (docs/SECURITY.md); the order is most specific first.
ALLOWED_ERRORS = (ShapeError, ModelError, BuildError, LibraryError)

HOSTILE_NAMES = ['a"; system("rm -rf ~"); //', "*/ int evil; /*", "line\nbreak", "#include <stdio.h>", "x\0y",
                 "ünï cödé ☃", "??/", "\\", "{{ fn }}", "{% raw %}", "0digit", " ", "x" * 10_000, "%s%n",
                 "__asm__"]
# Values that are wrong for almost any attribute: wrong types, huge, negative, non-finite, nested.
HOSTILE_VALUES = [None, True, -1, 0, 2**31, 2**63, 10**30, -(2**31), 1.5, float("nan"), float("inf"), "3", "",
                  [], [1], [1, 2, 3], [[1, 2]], {"a": 1}, HOSTILE_NAMES[0]]

SPATIAL = ["conv2d", "maxpool2d", "avgpool2d", "batchnorm"]
POINTWISE = ["relu", "leaky_relu", "relu6", "clip", "sigmoid", "tanh", "dropout"]
TO_FLAT = ["flatten", "global_avgpool", "global_maxpool"]
FLAT = ["dense", "batchnorm", "softmax"]


@st.composite
def layer_attrs(draw, op: str) -> dict[str, Any]:
    small = st.integers(1, 3)
    pair = st.one_of(small, st.lists(small, min_size=2, max_size=2))
    if op == "conv2d":
        out = {"filters": draw(st.integers(1, 6)), "kernel": draw(pair)}
        if draw(st.booleans()):
            out["stride"] = draw(pair)
        if draw(st.booleans()):
            out["padding"] = draw(st.one_of(st.integers(0, 2), st.sampled_from(["same", "valid"]),
                                            st.lists(st.integers(0, 2), min_size=4, max_size=4)))
        if draw(st.booleans()):
            out["dilation"] = draw(st.integers(1, 2))
        if draw(st.booleans()):
            out["groups"] = draw(st.sampled_from([1, 2, 3]))
        if draw(st.booleans()):
            out["bias"] = draw(st.booleans())
        return out
    if op in ("maxpool2d", "avgpool2d"):
        out = {"kernel": draw(pair)}
        if draw(st.booleans()):
            out["stride"] = draw(pair)
        if draw(st.booleans()):
            out["padding"] = draw(st.integers(0, 1))
        if draw(st.booleans()):
            out["ceil_mode"] = draw(st.booleans())
        if op == "avgpool2d" and draw(st.booleans()):
            out["count_include_pad"] = draw(st.booleans())
        return out
    if op == "dense":
        return {"units": draw(st.integers(1, 12)), **({"bias": False} if draw(st.booleans()) else {})}
    if op == "leaky_relu":
        return {"negative_slope": draw(st.floats(0, 2))}
    if op == "clip":
        lo = draw(st.floats(-2, 0))
        return {"min": lo, "max": lo + draw(st.floats(0, 3))}
    if op == "dropout":
        return {"rate": draw(st.floats(0, 0.9))}
    if op == "batchnorm" and draw(st.booleans()):
        return {"eps": draw(st.floats(1e-6, 0.1))}
    return {}


@st.composite
def valid_descriptions(draw) -> dict[str, Any]:
    """A chain (sometimes with add/concat branches) that is usually valid; shape errors can still happen."""
    flat = draw(st.booleans()) and draw(st.booleans())
    shape = [draw(st.integers(1, 12))] if flat else [draw(st.integers(1, 4)), draw(st.integers(1, 9)),
                                                       draw(st.integers(1, 9))]
    layers: list[dict[str, Any]] = []
    names = ["x"]
    for i in range(draw(st.integers(1, 6))):
        if not flat and draw(st.integers(0, 5)) == 0:
            op = draw(st.sampled_from(TO_FLAT))
            flat = True
        else:
            op = draw(st.sampled_from(POINTWISE + (FLAT if flat else SPATIAL)))
        layer = {"name": f"l{i}", "op": op, **draw(layer_attrs(op))}
        if len(names) > 1 and draw(st.integers(0, 4)) == 0:  # a second branch merged back in
            layers.append(layer)
            names.append(layer["name"])
            merge = draw(st.sampled_from(["add", "concat"]))
            layer = {"name": f"m{i}", "op": merge, "inputs": [names[-2], names[-1]]}
        layers.append(layer)
        names.append(layer["name"])
    desc = {"name": "fuzz", "input": {"name": "x", "shape": shape}, "layers": layers}
    if draw(st.booleans()):
        desc["seed"] = draw(st.integers(0, 2**32))
    return desc


def _mutations(draw, desc: dict[str, Any]) -> None:
    """Break `desc` in one of many ways, in place."""
    layers = desc["layers"]
    layer = layers[draw(st.integers(0, len(layers) - 1))]
    kind = draw(st.sampled_from([
        "attr-value", "attr-value", "new-attr", "drop-key", "op", "name", "inputs", "cycle", "duplicate",
        "input-shape", "top-level", "outputs", "layer-not-dict", "layers-type", "key-type", "seed", "weights"]))
    if kind == "attr-value":
        keys = [k for k in layer if k not in ("name", "op", "inputs")] or ["units"]
        layer[draw(st.sampled_from(keys))] = draw(st.sampled_from(HOSTILE_VALUES))
    elif kind == "new-attr":
        layer[draw(st.sampled_from(["kernal", "filters", "units", "stride", "axis", "padding"]))] = \
            draw(st.sampled_from(HOSTILE_VALUES + [1, 3]))
    elif kind == "drop-key":
        key = draw(st.sampled_from(sorted(layer, key=repr)))
        del layer[key]
    elif kind == "op":
        layer["op"] = draw(st.sampled_from(["input", "conv3d", "", "RELU"] + HOSTILE_VALUES))
    elif kind == "name":
        layer["name"] = draw(st.sampled_from(HOSTILE_NAMES + HOSTILE_VALUES + ["x"]))
    elif kind == "inputs":
        layer["inputs"] = draw(st.sampled_from([["nowhere"], [], ["x", "x"], "x", 3, [None], [["x"]],
                                                [layers[-1].get("name", "x")]]))
    elif kind == "cycle":
        layers[0]["inputs"] = [layers[-1].get("name", "x")]
    elif kind == "duplicate":
        layers.append(copy.deepcopy(layer))
    elif kind == "input-shape":
        desc["input"]["shape"] = draw(st.sampled_from([[], [0, 4, 4], [1, 2**31, 2**31], [3, 2**20, 2**20],
                                                      [1, -4, 4], [1, 4], [1, 2, 3, 4], "3x4x4", [1.5, 4, 4],
                                                      [2**14, 2**9, 2**9], None]))
    elif kind == "top-level":
        desc[draw(st.sampled_from(["layer", "Input", "version"]))] = 1
    elif kind == "outputs":
        desc["outputs"] = draw(st.sampled_from([["nowhere"], [], "l0", [layers[0].get("name")] * 2, [1]]))
    elif kind == "layer-not-dict":
        layers.insert(draw(st.integers(0, len(layers))), draw(st.sampled_from(["relu", 3, None, [1]])))
    elif kind == "layers-type":
        desc["layers"] = draw(st.sampled_from([None, [], {"op": "relu"}, "relu"]))
    elif kind == "key-type":  # YAML allows non-string keys
        where = draw(st.sampled_from([layer, desc, desc["input"]]))
        where[draw(st.sampled_from([1, None, True, 2.5, (1, 2)]))] = 1
        where[draw(st.sampled_from(["zz", "kernal"]))] = 1
    elif kind == "seed":
        desc["seed"] = draw(st.sampled_from([-1, 2**70, "zero", 1.5, None]))
    elif kind == "weights":
        desc["weights"] = draw(st.sampled_from(["/etc/passwd", "../../w.npz", "", 3, "missing.npz"]))


@st.composite
def descriptions(draw) -> tuple[dict[str, Any], bool]:
    """(description, mutated): about half the descriptions are deliberately broken, once or twice."""
    desc = draw(valid_descriptions())
    mutated = draw(st.booleans())
    if mutated:
        for _ in range(draw(st.integers(1, 2))):
            if isinstance(desc.get("layers"), list) and desc["layers"] and \
                    all(isinstance(layer, dict) for layer in desc["layers"]):
                _mutations(draw, desc)
    return desc, mutated


opt_levels = st.sampled_from(sorted(PIPELINES))


def run_description(desc: dict[str, Any] | os.PathLike, cache_dir=None, batch: int = 2, opt_level: int = 0) -> str:
    """load -> compile -> call on a random batch, compared with the interpreter; returns the outcome's name."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvcWarning)
            graph = compiler.load(desc)
        model = compiler.compile(graph, cache_dir=cache_dir, opt_level=opt_level)
    except ALLOWED_ERRORS as e:
        assert str(e), f"{type(e).__name__} without a message"
        if isinstance(desc, os.PathLike):
            assert str(desc) in str(e), f"the error does not name the file: {e}"
        return type(e).__name__
    name = graph.inputs[0]
    x = np.random.default_rng(0).standard_normal((batch, *graph.shape(name))).astype(np.float32)
    got = model.run({name: x})
    ref = compiler.interpret(graph, {name: x}, dtype=np.float64)
    for out in graph.outputs:
        scale = max(1.0, float(np.max(np.abs(ref[out]))))
        np.testing.assert_allclose(got[out], ref[out], rtol=1e-4, atol=1e-5 * scale, err_msg=f"output {out!r}")
    return "ok"
