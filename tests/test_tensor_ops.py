"""The tensor ops beyond their values: summary counts, where constants live, how loop nests simplify,
and that their generated C compiles without warnings."""
import subprocess

import numpy as np
import pytest

import compiler
from compiler.codegen import render, render_kernels
from compiler.kernels.select import select_kernels
from compiler.lower import lower
from compiler.memory import plan_memory
from compiler.target import Target
from compiler.ops.strided import broadcast_strides, contiguous_strides, loop_nest
from conftest import lowered, model_dict

NEW_OPS = {"constant", "sub", "mul", "div", "max", "min", "pow", "prelu", "transpose", "reshape", "identity", "pad",
           "lrn"}


def rows(graph):
    return {r.name: r for r in graph.summary().rows}


# ---------------------------------------------------------------- summary
def test_summary_params_and_macs():
    graph = compiler.load(model_dict([
        {"name": "k", "op": "constant", "shape": [3, 1, 1]},
        {"name": "m", "op": "mul", "inputs": ["x", "k", "x"]},
        {"name": "a", "op": "add", "inputs": ["m", "k"]},
        {"name": "d", "op": "div", "inputs": ["a", "x"]},
        {"name": "p", "op": "prelu", "num_parameters": 3},
        {"name": "l", "op": "lrn", "size": 5},
        {"name": "t", "op": "transpose", "perm": [0, 1, 3, 2]},
        {"name": "r", "op": "reshape", "shape": [-1]},
        {"name": "pad", "op": "pad", "pads": [1, 2]}], shape=(3, 4, 5)))
    n = 3 * 4 * 5
    r = rows(graph)
    assert (r["k"].params, r["k"].macs) == (3, 0)
    assert (r["m"].params, r["m"].macs) == (0, 2 * n)  # two multiplications per value
    assert r["a"].macs == 0 and r["d"].macs == n
    assert (r["p"].params, r["p"].macs) == (3, n)
    assert (r["l"].params, r["l"].macs) == (0, n * 6)  # 5 squares + 1 scale per value
    assert r["t"].macs == r["r"].macs == r["pad"].macs == 0
    assert r["pad"].shape == (63,) and r["pad"].formula == "60 + 1 + 2 = 63"
    assert r["a"].formula == "broadcast(3×4×5, 3×1×1) = 3×4×5" and r["m"].formula.startswith("broadcast(")
    assert r["t"].formula == "perm [0, 1, 3, 2]: 3×4×5 -> 3×5×4"
    assert r["k"].receptive_field is None and r["m"].receptive_field == (1, 1)
    summary = graph.summary()
    assert summary.params == 6
    # Constants are parameters, not activations; views are counted once (as their input).
    tensors = ["x", "m", "a", "d", "p", "l", "t", "pad"]
    assert summary.activation_bytes == 4 * sum(int(np.prod(graph.shape(t))) for t in tensors)


def test_summary_prelu_shared_slope_has_one_parameter():
    graph = compiler.load(model_dict([{"name": "p", "op": "prelu"}], shape=(3, 4, 5)))
    assert rows(graph)["p"].params == 1


# ---------------------------------------------------------------- constants live in the weights
def test_constant_is_a_pointer_into_the_weights_not_a_kernel():
    graph = compiler.load(model_dict([
        {"name": "k", "op": "constant", "shape": [3, 1, 1]},
        {"name": "kv", "op": "reshape", "shape": [3], "inputs": ["k"]},
        {"name": "s", "op": "add", "inputs": ["x", "k"]}], shape=(3, 4, 4), outputs=["s", "kv"]))
    plan = select_kernels(graph, Target.from_march("x86-64-v4"), 0)
    arena = plan_memory(graph, plan)
    assert arena.buffers["k"].kind == "const" and arena.buffers["kv"] == arena.buffers["k"]
    assert arena.floats == 0  # nothing but the caller's arrays and the weights
    model = lower(graph, plan, arena)
    assert [k.layer for k in model.kernels] == ["s"]
    offset = model.weights.offsets[("k", "value")]
    code = render(model).code
    assert f"L3_s(x0, convc_weights + {offset}, y0);" in code
    assert f"memcpy(y1, convc_weights + {offset}, 3 * sizeof(float));" in code
    np.testing.assert_array_equal(model.weights.data()[offset:offset + 3], graph.weights["k.value"].ravel())


def test_constant_init_is_seeded():
    desc = model_dict([{"name": "k", "op": "constant", "shape": [2, 3]}, {"op": "add", "inputs": ["x", "k"]}],
                      shape=(2, 3))
    a, b = compiler.load(desc), compiler.load(desc)
    c = compiler.load({**desc, "seed": 1})
    np.testing.assert_array_equal(a.weights["k.value"], b.weights["k.value"])
    assert not np.array_equal(a.weights["k.value"], c.weights["k.value"])
    assert len(np.unique(a.weights["k.value"])) == 6


# ---------------------------------------------------------------- loop nests
def nest_of(op_layer, shape, extra=()):
    """The op's plain-kernel arguments, with "bounds" (its loops) and "statement" (the line its template prints
    inside them, as C)."""
    graph = compiler.load(model_dict(list(extra) + [op_layer], shape=shape))
    layer = graph.layer(op_layer["name"])
    args = dict(layer.spec.kernel_args(layer, graph.in_shapes(layer.name), graph.shape(layer.name)))
    model = lowered(graph, opt_level=0)
    (code,) = [c for k, c in zip(model.kernels, render_kernels(model)) if k.layer == layer.name]
    (line,) = [ln.strip() for ln in code.splitlines() if ln.strip().startswith("y[") and " = x0[" in ln]
    return dict(args, bounds=[loop.bound for loop in args["loops"]], statement=line.rstrip(";"))


@pytest.mark.parametrize("const_shape,bounds,statement", [
    ([3, 4, 5], [60], "y[i0] = x0[i0] + x1[i0]"),
    ([3, 1, 1], [3, 20], "y[i0 * 20 + i1] = x0[i0 * 20 + i1] + x1[i0]"),
    ([1], [60], "y[i0] = x0[i0] + x1[0]"),
    ([5], [12, 5], "y[i0 * 5 + i1] = x0[i0 * 5 + i1] + x1[i1]"),
    ([3, 1, 5], [3, 4, 5], "y[i0 * 20 + i1 * 5 + i2] = x0[i0 * 20 + i1 * 5 + i2] + x1[i0 * 5 + i2]"),
])
def test_broadcast_loops_collapse(const_shape, bounds, statement):
    args = nest_of({"name": "s", "op": "add", "inputs": ["x", "k"]}, (3, 4, 5),
                   [{"name": "k", "op": "constant", "shape": const_shape}])
    assert args["bounds"] == bounds
    assert args["statement"] == statement


def test_transpose_loops():
    args = nest_of({"name": "t", "op": "transpose", "perm": [0, 1, 3, 2]}, (3, 4, 5))
    assert args["statement"] == "y[i0 * 20 + i1 * 4 + i2] = x0[i0 * 20 + i1 + i2 * 5]"
    # Moving a size-1 axis moves no data: one flat copy.
    args = nest_of({"name": "t", "op": "transpose", "perm": [0, 2, 1, 3]}, (1, 4, 5))
    assert args["bounds"] == [20] and args["statement"] == "y[i0] = x0[i0]"


def test_pad_loops():
    args = nest_of({"name": "p", "op": "pad", "pads": [1, 0, 0, 2, 0, 0]}, (3, 4, 5))
    assert args["fill"] and args["bounds"] == [60]
    assert args["statement"] == "y[i0 + 20] = x0[i0]"
    args = nest_of({"name": "p", "op": "pad", "pads": [0, 0, 0, 0]}, (3, 4))
    assert not args["fill"] and args["statement"] == "y[i0] = x0[i0]"


def test_loop_nest_helpers():
    assert contiguous_strides((3, 4, 5)) == [20, 5, 1]
    assert broadcast_strides((4, 1), (3, 4, 5)) == [0, 1, 0]
    nest = loop_nest((1, 1), [[1, 1], [0, 0]])
    assert nest.bounds == (1,) and nest.index(0).zero and not nest.index(0).terms
    assert nest_of({"name": "s", "op": "add", "inputs": ["x", "k"]}, (1, 1),
                   [{"name": "k", "op": "constant", "shape": [1]}])["statement"] == "y[0] = x0[0] + x1[0]"


# ---------------------------------------------------------------- the C compiles cleanly
def new_op_cases():
    from test_golden_ops import CASES
    return [c for c in CASES if c.id.startswith(("add-", "concat-", "softmax-"))
            or any(layer["op"] in NEW_OPS or "axis" in layer for layer in c.layers)]


def test_new_op_kernels_compile_without_warnings(tmp_path):
    """Every golden case that uses a new op or attribute: ASCII C that builds with the build's flags plus -Werror."""
    from runtime.build import compile_flags
    from test_golden_ops import load_quietly
    flags = [f for f in compile_flags() if f not in ("-shared", "-fPIC")] + ["-Werror", "-c"]
    cases = new_op_cases()
    assert len(cases) >= 40
    for case in cases:
        code = compiler.generate_c(load_quietly(case.description()), weights_mode="array").code
        assert code.isascii(), case.id
        path = tmp_path / f"{case.id}.c"
        path.write_text(code)
        result = subprocess.run(["cc", *flags, str(path), "-o", str(path.with_suffix(".o"))],
                                capture_output=True, text=True)
        assert result.returncode == 0 and "warning" not in result.stderr, (case.id, result.stderr)
