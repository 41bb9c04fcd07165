"""plan_memory (compiler/memory.py) on its own: one per-sample arena whose blocks are reused once a tensor's last
reader has run, views in their input's storage, outputs in the caller's arrays, constants in the weights, kernel
scratch beside the live tensors, 64-byte alignment. Expected offsets and sizes are worked out here from the
tensors' sizes and lifetimes; every plan also passes verify_memory.

Most graphs are planned at opt level 0, so the tensors are the layers as written (no pass merges them).
"""
from __future__ import annotations

import dataclasses
import warnings

import pytest

import compiler
from compiler.kernels.select import select_kernels
from compiler.memory import ALIGN_FLOATS, Buffer, plan_memory
from compiler.passes import optimize
from compiler.verify import verify_memory
from conftest import AVX2, AVX512, TARGET_IDS, TARGETS, compile_and_check, model_dict


def planned(layers, shape, opt_level=0, target=AVX512, **extra):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", compiler.ConvcWarning)
        graph = optimize(compiler.load(model_dict(layers, shape=shape, **extra)), opt_level)
    plan = select_kernels(graph, target, opt_level)
    arena = plan_memory(graph, plan)
    verify_memory(graph, plan, arena)
    return graph, plan, arena


def lines(floats: int) -> int:
    """Floats rounded up to whole 64-byte lines (16 floats)."""
    return -(-floats // 16) * 16


def relu(name, src):
    return {"name": name, "op": "relu", "inputs": [src]}


def test_alignment_is_64_bytes():
    assert ALIGN_FLOATS * 4 == 64


# ---------------------------------------------------------------- reuse by liveness
def test_a_chain_needs_two_blocks_whatever_its_length():
    """In a chain only a layer's input and output are live at once: two blocks, reused in turn; the last layer
    writes the caller's output array. 3×5×5 = 75 floats per tensor take 80 (whole lines)."""
    layers = [relu("r1", "x"), relu("r2", "r1"), relu("r3", "r2"), relu("r4", "r3"), relu("r5", "r4")]
    graph, _, arena = planned(layers, (3, 5, 5))
    assert arena.floats == 2 * lines(75) == 160
    offsets = [arena.buffers[f"r{i}"].index for i in range(1, 5)]
    assert sorted(set(offsets)) == [0, 80] and offsets[0] != offsets[1]  # no layer writes over its input
    assert arena.buffers["r5"] == Buffer("output", 0, 75)


def test_a_residual_keeps_its_input_live_across_the_branch():
    """a is read again by the add after b and c: while c is computed, a, b and c are live (three blocks)."""
    layers = [relu("a", "x"), relu("b", "a"), relu("c", "b"), {"name": "s", "op": "add", "inputs": ["c", "a"]},
              relu("t", "s")]
    _, _, arena = planned(layers, (4, 4, 4))
    assert arena.floats == 3 * lines(64)
    assert len({arena.buffers[n].index for n in "abc"}) == 3


def test_a_freed_hole_is_filled_first():
    """big (16×4×4 = 256 floats) dies once small has read it; the next tensor that fits takes its place (first
    fit) instead of growing the arena."""
    layers = [{"name": "big", "op": "conv2d", "filters": 16, "kernel": 1, "inputs": ["x"]},
              {"name": "keep", "op": "conv2d", "filters": 1, "kernel": 1, "inputs": ["x"]},  # 16 floats, to the end
              {"name": "small", "op": "global_avgpool", "inputs": ["big"]},  # 16 floats
              relu("r", "small"), {"name": "fr", "op": "flatten", "inputs": ["r"]},
              {"name": "fk", "op": "flatten", "inputs": ["keep"]},
              {"name": "out", "op": "concat", "inputs": ["fr", "fk"]}]
    _, _, arena = planned(layers, (2, 4, 4))
    b = arena.buffers
    assert (b["big"].index, b["keep"].index, b["small"].index) == (0, 256, 272)
    assert b["r"].index == 0
    assert arena.floats == 256 + 16 + 16


# ---------------------------------------------------------------- views
@pytest.mark.parametrize("view", [{"op": "flatten"}, {"op": "reshape", "shape": [-1]}, {"op": "dropout"},
                                  {"op": "identity"}], ids=lambda v: v["op"])
def test_a_view_shares_its_roots_storage_and_keeps_it_live(view):
    """v (a view of a) is read last: a must stay live through b and c, which are computed meanwhile."""
    layers = [relu("a", "x"), {"name": "v", "inputs": ["a"], **view}, relu("b", "x"), relu("c", "b"),
              {"name": "fb", "op": "flatten", "inputs": ["c"]}, {"name": "fv", "op": "flatten", "inputs": ["v"]},
              {"name": "s", "op": "add", "inputs": ["fb", "fv"]}]
    graph, _, arena = planned(layers, (2, 3, 3))
    b = arena.buffers
    assert b["v"] == b["a"] and b["a"].kind == "arena" and b["fb"] == b["c"]
    a_floats = set(range(b["a"].index, b["a"].index + 18))
    assert not a_floats & set(range(b["b"].index, b["b"].index + 18))
    assert not a_floats & set(range(b["c"].index, b["c"].index + 18))


def test_a_view_of_the_input_reads_the_callers_array():
    _, plan, arena = planned([{"name": "f", "op": "flatten"}, {"name": "fc", "op": "dense", "units": 3}], (2, 3, 3))
    assert arena.buffers["f"] == arena.buffers["x"] == Buffer("input", 0, 18)
    assert arena.floats == 0 and not arena.copies


# ---------------------------------------------------------------- outputs and constants
def test_an_output_is_computed_in_the_callers_array():
    _, _, arena = planned([relu("a", "x"), relu("b", "a")], (2, 3, 3), outputs=["b", "a"])
    assert arena.buffers["b"] == Buffer("output", 0, 18) and arena.buffers["a"] == Buffer("output", 1, 18)
    assert arena.floats == 0 and not arena.copies


def test_an_output_that_is_a_view_has_its_root_computed_in_its_array():
    _, _, arena = planned([relu("a", "x"), {"name": "f", "op": "flatten"}], (2, 3, 3))
    assert arena.buffers["a"] == arena.buffers["f"] == Buffer("output", 0, 18)


@pytest.mark.parametrize("outputs, copies", [
    (["a", "f"], [("f", "a")]),  # two outputs of one storage: the second is copied from the first's array
    (["a", "x"], [("x", "x")]),  # the input as an output
    (["a", "fx"], [("fx", "x")]),  # a view of the input
    (["a", "k"], [("k", "k")]),  # a constant
], ids=["two-names", "input", "view-of-input", "constant"])
def test_outputs_that_are_other_storage_are_copied(outputs, copies):
    layers = [relu("a", "x"), {"name": "f", "op": "flatten", "inputs": ["a"]},
              {"name": "fx", "op": "flatten", "inputs": ["x"]}, {"name": "k", "op": "constant", "shape": [5]}]
    _, _, arena = planned(layers, (2, 3, 3), outputs=outputs)
    assert arena.copies == copies
    assert arena.buffers["a"] == Buffer("output", 0, 18)


def test_constants_live_in_the_weights_numbered_in_layer_order():
    layers = [{"name": "k1", "op": "constant", "shape": [2, 1, 1]}, {"name": "m", "op": "mul", "inputs": ["x", "k1"]},
              {"name": "k2", "op": "constant", "shape": [1]}, {"name": "s", "op": "add", "inputs": ["m", "k2"]}]
    _, _, arena = planned(layers, (2, 3, 3))
    assert arena.buffers["k1"] == Buffer("const", 0, 2) and arena.buffers["k2"] == Buffer("const", 1, 1)
    assert arena.buffers["m"] == Buffer("arena", 0, 18) and arena.floats == lines(18)


# ---------------------------------------------------------------- scratch
@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
def test_scratch_sits_beside_the_live_tensors_and_is_free_after_its_layer(target):
    """w (a Winograd conv) needs scratch during its call, beside its input a (16×12×12 = 2304 floats) and its
    output; after w, b reuses the space (a is dead, the scratch free)."""
    layers = [{"name": "a", "op": "conv2d", "filters": 16, "kernel": 1},
              {"name": "w", "op": "conv2d", "filters": 16, "kernel": 3, "padding": 1},
              {"name": "b", "op": "conv2d", "filters": 16, "kernel": 1},
              {"name": "c", "op": "conv2d", "filters": 16, "kernel": 1}]
    graph, plan, arena = planned(layers, (12, 12, 12), opt_level=2, target=target)
    need = plan["w"].scratch_floats
    assert plan["w"].kernel == "winograd" and need > 0 and set(arena.scratch) == {"w"}
    scratch, a, w, b = arena.scratch["w"], arena.buffers["a"], arena.buffers["w"], arena.buffers["b"]
    assert scratch.kind == "arena" and scratch.size == need and scratch.index % 16 == 0
    assert (a.index, w.index) == (0, 2304) and scratch.index == 2 * 2304  # after the two live tensors
    assert b.index == 0  # a's block: a is dead once w has run
    assert arena.floats == 2 * 2304 + lines(need)


def test_no_scratch_without_a_kernel_plan_or_below_level_2():
    layers = [{"name": "w", "op": "conv2d", "filters": 16, "kernel": 3, "padding": 1}, relu("r", "w")]
    for level in (0, 1):
        assert not planned(layers, (16, 12, 12), opt_level=level, target=AVX2)[2].scratch
    graph, plan, _ = planned(layers, (16, 12, 12), opt_level=2, target=AVX2)
    assert plan["r"].kernel == "winograd"  # w + r fused
    assert plan_memory(graph, None).scratch == {}


def test_every_block_is_aligned_and_inside_the_arena():
    """Odd sizes (3×5×7 = 105 floats) still start every block on a 64-byte line, and the arena is whole lines so
    that each thread's arena slot is aligned too."""
    layers = [relu("a", "x"), relu("b", "a"), {"name": "s", "op": "add", "inputs": ["a", "b"]}, relu("t", "s")]
    _, _, arena = planned(layers, (3, 5, 7))
    blocks = [b for b in arena.buffers.values() if b.kind == "arena"]
    assert blocks and all(b.index % 16 == 0 and b.index + b.size <= arena.floats for b in blocks)
    assert arena.floats % 16 == 0 and arena.floats == 3 * lines(105)


# ---------------------------------------------------------------- concats computed in place
def conv(name, src, filters=16, kernel=1):
    return {"name": name, "op": "conv2d", "filters": filters, "kernel": kernel, "padding": kernel // 2,
            "inputs": [src]}


# DenseNet's growing concat: c1 = [a, b]; d reads relu(c1); c2 = [c1, d]
DENSE = [conv("a", "x", kernel=3), conv("b", "x"), {"name": "c1", "op": "concat", "inputs": ["a", "b"]},
         relu("r", "c1"), conv("d", "r", kernel=3), {"name": "c2", "op": "concat", "inputs": ["c1", "d"]},
         conv("out", "c2", filters=8)]


def test_concat_inputs_are_computed_in_their_parts_of_the_outermost_concat():
    from compiler.memory import Slice
    graph, plan, arena = planned(DENSE, (8, 8, 8), opt_level=1)
    assert arena.slices == {"a": Slice("c1", 0), "b": Slice("c1", 1024), "c1": Slice("c2", 0),
                            "d": Slice("c2", 2048)}
    c2 = arena.buffers["c2"]
    assert c2 == Buffer("arena", c2.index, 3072)
    assert arena.buffers["a"] == Buffer("arena", c2.index, 1024)
    assert arena.buffers["b"] == Buffer("arena", c2.index + 1024, 1024)
    assert arena.buffers["c1"] == Buffer("arena", c2.index, 2048)
    assert arena.buffers["d"] == Buffer("arena", c2.index + 2048, 1024)
    # c2's block is live from a's producer on: r, computed while it is, lies outside it
    r = arena.buffers["r"]
    assert r.index >= c2.index + 3072 or r.index + r.size <= c2.index
    code = compiler.generate_c(graph, opt_level=1).code
    for concat in ("c1", "c2"):
        body = code[code.index(f" {concat} (concat):"):]
        body = body[:body.index("\n}\n")]
        assert "memcpy" not in body and "computed in place" in body


# torchvision's DenseNet: every layer concatenates all earlier features anew, c1 = [a, b], c2 = [a, b, d], ...
GROWING = [conv("a", "x", kernel=3), conv("b", "x"), {"name": "c1", "op": "concat", "inputs": ["a", "b"]},
           relu("r1", "c1"), conv("d", "r1", kernel=3), {"name": "c2", "op": "concat", "inputs": ["a", "b", "d"]},
           relu("r2", "c2"), conv("e", "r2"), {"name": "c3", "op": "concat", "inputs": ["a", "b", "d", "e"]},
           conv("out", "c3", filters=8)]


def test_each_concat_of_a_growing_block_is_a_prefix_of_the_next():
    """Every feature is computed once, in its part of the last concat; the earlier concats are its prefixes, so
    no concat copies anything (before: d and e were copied by every later concat)."""
    from compiler.memory import Slice
    for level in (1, 2):
        graph, plan, arena = planned(GROWING, (8, 8, 8), opt_level=level)
        assert arena.slices == {"a": Slice("c1", 0), "b": Slice("c1", 1024), "c1": Slice("c2", 0),
                                "d": Slice("c2", 2048), "c2": Slice("c3", 0), "e": Slice("c3", 3072)}
        c3 = arena.buffers["c3"]
        assert arena.buffers["c1"] == Buffer("arena", c3.index, 2048)
        assert arena.buffers["c2"] == Buffer("arena", c3.index, 3072)
        assert arena.buffers["e"] == Buffer("arena", c3.index + 3072, 1024)
        for r in ("r1", "r2"):  # computed while c3's block is live: outside it
            buf = arena.buffers[r]
            assert buf.index >= c3.index + 4096 or buf.index + buf.size <= c3.index
        code = compiler.generate_c(graph, opt_level=level).code
        for concat in ("c1", "c2", "c3"):
            body = code[code.index(f" {concat} (concat):"):]
            body = body[:body.index("\n}\n")]
            assert "memcpy" not in body and "computed in place" in body
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", compiler.ConvcWarning)
        source = compiler.load(model_dict(GROWING, shape=(8, 8, 8)))
    for level in (0, 1, 2):
        compile_and_check(source, opt_level=level)


@pytest.mark.parametrize("second,outputs", [
    (["b", "a", "d"], None),  # another order: a and b are not c1's parts there
    (["a", "d", "b"], None),  # c1's inputs, but not first
    (["a", "b", "d"], ["out", "c1"]),  # c1 is an output (computed in the caller's array)
], ids=["reordered", "not-first", "prefix-is-output"])
def test_a_concat_is_a_prefix_only_of_one_that_starts_with_its_inputs(second, outputs):
    layers = [conv("a", "x", kernel=3), conv("b", "x"), {"name": "c1", "op": "concat", "inputs": ["a", "b"]},
              relu("r1", "c1"), conv("d", "r1"), {"name": "c2", "op": "concat", "inputs": second},
              conv("out", "c2", filters=8)]
    extra = {"outputs": outputs} if outputs else {}
    graph, plan, arena = planned(layers, (8, 8, 8), opt_level=1, **extra)
    assert "c1" not in arena.slices
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", compiler.ConvcWarning)
        source = compiler.load(model_dict(layers, shape=(8, 8, 8), **extra))
    compile_and_check(source, opt_level=1)


def test_verify_memory_checks_a_prefix():
    from compiler.verify import InvariantError
    graph, plan, arena = planned(GROWING, (8, 8, 8), opt_level=1)
    moved = dataclasses.replace(arena, slices={**arena.slices, "c1": dataclasses.replace(arena.slices["c1"], offset=16)})
    with pytest.raises(InvariantError, match="'c1'.*prefix"):
        verify_memory(graph, plan, moved)
    wrong = dataclasses.replace(arena, slices={**arena.slices, "c2": arena.slices["c1"]})  # c2 is no prefix of c2
    with pytest.raises(InvariantError, match="'c2'"):
        verify_memory(graph, plan, wrong)


@pytest.mark.parametrize("layers,outputs,shape,slices", [
    # the concat is an output: its inputs are copied into the caller's array
    ([conv("a", "x"), conv("b", "x"), {"name": "c", "op": "concat", "inputs": ["a", "b"]}], None, (8, 8, 8), {}),
    # the model's input cannot be computed anywhere; a can
    ([conv("a", "x"), {"name": "c", "op": "concat", "inputs": ["x", "a"]}, conv("o", "c")], None, (8, 8, 8),
     {"a": ("c", 512)}),
    # read twice by the concat
    ([conv("a", "x"), {"name": "c", "op": "concat", "inputs": ["a", "a"]}, conv("o", "c")], None, (8, 8, 8), {}),
    # an input that is an output too
    ([conv("a", "x"), conv("b", "x"), {"name": "c", "op": "concat", "inputs": ["a", "b"]}, conv("o", "c")],
     ["o", "a"], (8, 8, 8), {"b": ("c", 1024)}),
    # 3×5×5 = 75 floats: b's part would start off a 64-byte line
    ([conv("a", "x", 3), conv("b", "x", 3), {"name": "c", "op": "concat", "inputs": ["a", "b"]}, conv("o", "c")],
     None, (3, 5, 5), {"a": ("c", 0)}),
    # joined along the rows: per sample the parts interleave
    ([conv("a", "x"), conv("b", "x"), {"name": "c", "op": "concat", "axis": 2, "inputs": ["a", "b"]},
      conv("o", "c")], None, (8, 8, 8), {}),
    # a in two concats: in place in the first, copied by the second
    ([conv("a", "x"), conv("b", "x"), {"name": "c", "op": "concat", "inputs": ["a", "b"]},
      {"name": "e", "op": "concat", "inputs": ["b", "a"]}, {"name": "s", "op": "add", "inputs": ["c", "e"]}],
     None, (8, 8, 8), {"a": ("c", 0), "b": ("c", 1024)}),
], ids=["concat-output", "model-input", "read-twice", "input-is-output", "misaligned", "rows", "two-concats"])
def test_concat_inputs_computed_in_place_only_where_they_may_be(layers, outputs, shape, slices):
    from compiler.memory import Slice
    extra = {"outputs": outputs} if outputs else {}
    graph, plan, arena = planned(layers, shape, opt_level=1, **extra)
    assert arena.slices == {name: Slice(*where) for name, where in slices.items()}
    _, _, level0 = planned(layers, shape, opt_level=0, **extra)
    assert level0.slices == {}  # opt level 0: every concat copies
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", compiler.ConvcWarning)
        source = compiler.load(model_dict(layers, shape=shape, **extra))
    for level in (0, 1, 2):
        compile_and_check(source, opt_level=level)


@pytest.mark.parametrize("break_,fragments", [
    (lambda a: dataclasses.replace(a, slices={**a.slices, "d": dataclasses.replace(a.slices["d"], offset=1024)}),
     ["'d'", "float 1024", "concat 'c2'", "at 2048"]),
    (lambda a: dataclasses.replace(a, slices={**a.slices, "r": a.slices["d"]}), ["'r'", "reads it 0 times"]),
    (lambda a: dataclasses.replace(a, buffers={**a.buffers, "b": dataclasses.replace(a.buffers["b"],
                                                                                     index=a.buffers["b"].index + 16)}),
     ["'b'", "its part of concat 'c1'"]),
    (lambda a: dataclasses.replace(a, slices={k: v for k, v in a.slices.items() if k != "a"}),
     ["'a'", "overlap"]),
], ids=["offset-moved", "not-an-input", "buffer-moved", "slice-forgotten"])
def test_verify_memory_checks_the_slices(break_, fragments):
    from compiler.verify import InvariantError
    graph, plan, arena = planned(DENSE, (8, 8, 8), opt_level=1)
    with pytest.raises(InvariantError) as caught:
        verify_memory(graph, plan, break_(arena))
    for fragment in fragments:
        assert fragment in str(caught.value), (fragment, str(caught.value))
