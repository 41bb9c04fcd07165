"""The batched tail (compiler/batching.py): trailing dense layers run once per group of samples.

Which layers form the tail (and when there is none), where the group area lies, and, on both targets, that
every batch size from 1 to past two groups, on 1 to 3 threads, gives each sample the very bits it gets alone
and the float64 interpreter's values: through the batched dense kernel (dense_rows.c.j2) and a per-row call of
a kernel without a batched form (softmax; on AVX-512 a dense layer of fewer units than lanes); the portable
scalar path gives the interpreter's values.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import compiler
from compiler.batching import GROUP_SAMPLES, plan_batch_tail
from compiler.lower import lower
from compiler.memory import plan_memory
from compiler.verify import InvariantError, verify_batch_tail, verify_pipeline
from conftest import AVX2, AVX512, TARGET_IDS, TARGETS, assert_close, kernel_plan, model_dict, random_input, runnable


def head_and_tail(units=300, last_units=37, softmax=True, shape=(3, 12, 12), **extra):
    """A conv head, then flatten (1,152 values) -> dense `units` (1.4 MB of weights at 300) -> relu -> dense
    `last_units` (-> softmax)."""
    layers = [
        {"op": "conv2d", "name": "c1", "filters": 8, "kernel": 3, "padding": 1},
        {"op": "relu", "name": "r1"},
        {"op": "flatten", "name": "flat"},
        {"op": "dense", "name": "fc1", "units": units},
        {"op": "relu", "name": "r2"},
        {"op": "dense", "name": "fc2", "units": last_units},
    ]
    if softmax:
        layers.append({"op": "softmax", "name": "sm"})
    return compiler.load(model_dict(layers, shape=shape, name="tail", seed=3, **extra))


def tail_of(graph, target=AVX512):
    optimized, plan = kernel_plan(graph, target)
    return optimized, plan, plan_batch_tail(optimized, plan)


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
def test_the_tail_is_the_trailing_dense_chain_from_the_first_batched_layer(target):
    optimized, plan, tail = tail_of(head_and_tail(), target)
    assert tail is not None and tail.group == GROUP_SAMPLES
    # fc1 + r2 fused; the conv before it has no batched form, so the tail starts at fc1 and reads the flatten
    assert [optimized.layer(n).sources[0] for n in tail.layers] == ["fc1", "fc2", "sm"]
    assert tail.source == "flat"
    assert tail.weight_bytes > target.l2_bytes


def test_weights_that_fit_l2_keep_samples_one_after_another():
    _, plan, tail = tail_of(head_and_tail(units=20))  # 1,152 x 20 weights: 92 KB
    assert tail is None


def test_a_tensor_read_outside_the_chain_ends_it():
    """fc1's output is also a model output: the tail is fc2 alone, and its weights fit L2, so there is none;
    with fc1's output read by the last layer only, the tail is back."""
    graph = head_and_tail(outputs=["sm", "r2"])
    assert tail_of(graph)[2] is None
    assert tail_of(head_and_tail(outputs=["sm"]))[2] is not None


def test_a_model_output_read_by_the_tail_is_its_source():
    """The flatten is an output too (computed by the head, copied per sample); the tail still starts from it."""
    graph = head_and_tail(outputs=["sm", "flat"])
    optimized, plan, tail = tail_of(graph)
    assert tail is not None and tail.source == "flat"


def test_group_area_rows_do_not_overlap():
    optimized, plan, tail = tail_of(head_and_tail())
    arena = plan_memory(optimized, plan, tail)
    spans = []
    for name, offset in arena.group.items():
        spans.append((offset, offset + tail.group * int(np.prod(optimized.shape(name)))))
    assert set(arena.group) == {tail.source, *tail.layers[:-1]}
    spans.sort()
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])) and spans[-1][1] <= arena.group_floats
    assert plan_memory(optimized, plan).group_floats == 0  # no tail planned: no group area


def test_profiling_and_whole_tensor_builds_have_no_tail():
    model = compiler.compile(head_and_tail(), profile=True)
    assert model.group_floats == 0
    assert compiler.compile(head_and_tail()).group_floats > 0


def check_every_batch_size(model, graph, batches=range(1, 2 * GROUP_SAMPLES + 2), threads=(1, 2, 3), same_bits=True):
    """Each batch size gives each sample the interpreter's values and (same_bits) the bits it gets alone."""
    name = graph.inputs[0]
    x = random_input(graph.shape(name), batch=max(batches), seed=5)
    ref = compiler.interpret(graph, {name: x}, dtype=np.float64)
    try:
        for n in threads:
            model.set_threads(n)
            alone = [model.run({name: x[i:i + 1]}) for i in range(max(batches))]
            for batch in batches:
                got = model.run({name: x[:batch]})
                for out in model.output_names:
                    want = np.concatenate([a[out] for a in alone[:batch]])
                    assert not same_bits or np.array_equal(got[out], want), \
                        f"batch {batch}, {n} threads: {out} differs from alone"
                    assert_close(got[out], ref[out][:batch])
    finally:
        model.set_threads(None)


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
def test_every_batch_size_gives_each_sample_its_own_bits(target):
    graph = head_and_tail()
    model = compiler.compile(graph, march=runnable(target))
    assert model.group_floats > 0
    check_every_batch_size(model, graph)


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
def test_two_outputs_and_a_last_layer_without_a_batched_form(target):
    """10 units: on AVX-512 fewer than a vector's lanes, so the dot-product kernel, called once per row; the
    flatten is an output as well."""
    graph = head_and_tail(units=400, last_units=10, softmax=False, outputs=["fc2", "flat"])
    optimized, plan, tail = tail_of(graph, target)
    assert tail is not None and plan[tail.layers[-1]].kernel == ("dense_vector" if target is AVX512
                                                                else "dense_blocked")
    model = compiler.compile(graph, march=runnable(target))
    check_every_batch_size(model, graph, batches=(1, 2, 7, 8, 9, 17), threads=(1, 2))


def test_the_portable_path_computes_the_same():
    """-DCONVC_NO_VECTOR_EXTENSIONS: the scalar loops. Their values, not their bits: cc may vectorize and contract
    the loops of a kernel inlined into the tail otherwise than into the sample's pass (an ulp apart)."""
    graph = head_and_tail(units=260, last_units=21)
    model = compiler.compile(graph, march=runnable(AVX2), cflags=["-DCONVC_NO_VECTOR_EXTENSIONS"])
    check_every_batch_size(model, graph, batches=(1, 3, 8, 11), threads=(1,), same_bits=False)


def test_a_model_of_dense_layers_only_starts_from_its_input():
    graph = compiler.load(model_dict([
        {"op": "dense", "name": "fc1", "units": 512, "inputs": ["x"]},
        {"op": "tanh", "name": "t1"},
        {"op": "dense", "name": "fc2", "units": 64},
    ], shape=(600,), name="mlp", seed=4))
    optimized, plan, tail = tail_of(graph)
    assert tail is not None and tail.source == "x"
    model = compiler.compile(graph)
    check_every_batch_size(model, graph, batches=(1, 5, 8, 13), threads=(1, 2))


def test_a_model_built_in_units_calls_the_batched_form_through_its_entry_point():
    """16 kernel functions or more: cc builds them in units of their own (compiler/codegen.py), and the batched
    form gets a hidden entry point of its own, taking n; a kernel's own `rows` parameter (layernorm's) is not it."""
    layers = [{"op": "conv2d", "name": f"c{i}", "filters": 4 + i, "kernel": 3, "padding": 1} for i in range(16)]
    layers += [{"op": "flatten", "name": "flat"}, {"op": "dense", "name": "fc1", "units": 140},
               {"op": "layernorm", "name": "ln", "axis": -1}, {"op": "dense", "name": "fc2", "units": 24}]
    graph = compiler.load(model_dict(layers, shape=(3, 10, 10), name="units", seed=6))
    source = compiler.generate_c(graph, march=AVX2, jobs=2)
    assert source.units
    entries = [line for unit in source.units.values() for line in unit.splitlines() if "visibility" in line]
    batched = [line for line in entries if "(int n," in line]
    assert batched and all("_rows(int n," in line for line in batched)
    model = compiler.compile(graph, march=runnable(AVX2))
    assert model.group_floats > 0
    check_every_batch_size(model, graph, batches=(1, 4, 9), threads=(2,))


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("graph", [head_and_tail, lambda: head_and_tail(units=400, last_units=10, softmax=False,
                                                                       outputs=["fc2", "flat"])],
                         ids=["softmax", "two-outputs"])
def test_the_pipeline_keeps_the_tail_invariants(graph, target):
    lowered = verify_pipeline(graph(), target, 2)
    assert lowered.tail is not None and len(lowered.tail.calls) == len(lowered.tail.layers)


def _tail_stages():
    optimized, plan, tail = tail_of(head_and_tail())
    arena = plan_memory(optimized, plan, tail)
    return optimized, plan, tail, arena, lower(optimized, plan, arena)


def test_verify_batch_tail_catches_a_wrong_row_or_overlap():
    optimized, plan, tail, arena, lowered = _tail_stages()
    verify_batch_tail(optimized, plan, tail, arena, lowered)
    # the first tail call reading the group area one row late
    first = lowered.tail.calls[0]
    moved = dataclasses.replace(first, args=(dataclasses.replace(first.args[0], offset=first.args[0].offset + 16),
                                             *first.args[1:]))
    bad = dataclasses.replace(lowered, tail=dataclasses.replace(lowered.tail, calls=(moved, *lowered.tail.calls[1:])))
    with pytest.raises(InvariantError, match="tail call"):
        verify_batch_tail(optimized, plan, tail, arena, bad)
    # two tensors' rows overlapping in the group area
    group = dict(arena.group)
    group[tail.layers[0]] = group[tail.source] + 16
    with pytest.raises(InvariantError, match="overlap"):
        verify_batch_tail(optimized, plan, tail, dataclasses.replace(arena, group=group), lowered)
    # a tail that is not the model's last layers
    short = dataclasses.replace(tail, layers=tail.layers[:-1])
    with pytest.raises(InvariantError, match="last computed layers"):
        verify_batch_tail(optimized, plan, short, dataclasses.replace(arena, tail=short), lowered)
