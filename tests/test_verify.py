"""compiler/verify.py: the invariants between the back end's stages hold for every model the project has (the
examples, the benchmark's four, the kernel tests' tables and random networks) on both x86 targets at every opt
level; and each check catches a stage's output broken on purpose.

No C is compiled: the checks stop at the lowered model. Every test states its target (AVX2: 8 lanes, AVX-512:
16 lanes); nothing depends on this machine's vectors.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.util
import warnings
from types import MappingProxyType

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import compiler
from compiler.kernels.select import select_kernels
from compiler.lower import Pointer, lower
from compiler.memory import Buffer, plan_memory
from compiler.passes import PIPELINES, optimize
from compiler.verify import (InvariantError, verify_graph, verify_kernel_plan, verify_lowered, verify_memory,
                             verify_pipeline)
from conftest import AVX2, AVX512, EXAMPLES, ROOT, TARGET_IDS, TARGETS, model_dict, out_size
from test_emit_c import EVERY_FAST_KERNEL
from test_whole_tensor import ACROSS as WHOLE_TENSOR
from test_layouts import CASES as LAYOUT_CASES
from test_layouts import channel_vector_chains
from test_optimize import FAST_CASES
from test_properties import dags

OPT_LEVELS = sorted(PIPELINES)


def _bench_models() -> dict:
    """bench/models.py's MODELS, loaded by path (the repository root need not be on sys.path)."""
    spec = importlib.util.spec_from_file_location("bench_models", ROOT / "bench" / "models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MODELS


def load_quietly(description):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", compiler.ConvcWarning)
        return compiler.load(description)


# Every model description the project has, by name: (layers, input shape) tables become descriptions.
MODELS: dict = {f"example-{p.stem}": p for p in sorted(EXAMPLES.glob("*.yaml"))}
MODELS.update({f"bench-{name}": make for name, make in _bench_models().items()})
MODELS.update({f"layouts-{name}": (layers, shape) for name, (layers, shape) in LAYOUT_CASES.items()})
MODELS.update({f"fast-{name}": (layers, shape) for name, (layers, shape) in FAST_CASES.items()})
MODELS["every-fast-kernel"] = EVERY_FAST_KERNEL
MODELS["whole-tensor-across"] = WHOLE_TENSOR  # per-sample ops repeated over the leading axis


@functools.lru_cache(maxsize=None)
def model_graph(name: str):
    """The loaded graph of MODELS[name] (cached: verify_pipeline checks that nothing changes it)."""
    model = MODELS[name]
    if callable(model):
        model = model()
    elif isinstance(model, tuple):
        model = model_dict(model[0], shape=model[1], name="m")
    return load_quietly(model)


@pytest.mark.parametrize("opt_level", OPT_LEVELS)
@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_model_keeps_the_invariants(model, target, opt_level):
    lowered = verify_pipeline(model_graph(model), target, opt_level)
    assert lowered.calls


def test_the_models_reach_every_kernel_and_blocked_layouts():
    """The table above is worth running: between them its models take every kernel on both targets, and
    channel-blocked tensors of both widths."""
    from compiler.kernels import KERNELS

    for target in TARGETS:
        used, lanes = set(), set()
        for name in MODELS:
            graph = optimize(model_graph(name), 2)
            plan = select_kernels(graph, target, 2)
            used |= {c.kernel for c in plan.choices.values()}
            lanes |= set(plan.layouts.values())
        assert used == set(KERNELS), (target.name, set(KERNELS) - used)
        assert lanes == {target.lanes}


# ---------------------------------------------------------------- random networks
def _conv_out(shape, kernel, stride, pad, dilation=1):
    _, h, w = shape
    return out_size(h, kernel, stride, dilation, pad, pad), out_size(w, kernel, stride, dilation, pad, pad)


@st.composite
def networks(draw):
    """A random valid DAG over a pool of tensors, with channel counts that are whole vectors on either target
    (so that layouts get blocked), and every kind of tensor the memory plan treats apart: views (flatten,
    reshape, dropout, identity) of computed tensors and of the input, constants, concats, residual adds,
    several outputs (the input, a view or a constant among them). Shapes are tracked with PyTorch's
    output-size rule (conftest.out_size), not convc's."""
    c = draw(st.sampled_from([3, 8, 16, 32]))
    tensors = {"x": (c, draw(st.integers(1, 12)), draw(st.integers(1, 12)))}
    layers: list[dict] = []

    def add(layer: dict, shape: tuple) -> None:
        layers.append(layer)
        tensors[layer["name"]] = shape

    for i in range(draw(st.integers(1, 10))):
        name = f"n{i}"
        # mostly a chain (so that tensors have one reader and can be blocked), sometimes a branch
        src = layers[-1]["name"] if layers and draw(st.integers(0, 3)) else draw(st.sampled_from(sorted(tensors)))
        shape = tensors[src]
        spatial = len(shape) == 3
        kinds = ["pointwise", "depthwise", "conv", "conv3x3", "bn", "act", "add", "concat", "pool", "global", "flatten",
                 "reshape", "view", "constant", "movement"] if spatial else ["dense", "act", "view", "add", "bn"]
        kind = draw(st.sampled_from(kinds))
        base = {"name": name, "inputs": [src]}
        if kind == "pointwise":
            filters = draw(st.sampled_from([8, 16, 24, 32, 48]))
            add({**base, "op": "conv2d", "filters": filters, "kernel": 1}, (filters, *shape[1:]))
        elif kind == "conv3x3":  # what the Winograd kernel takes (with more than 8 input channels)
            filters = draw(st.sampled_from([16, 32]))
            add({**base, "op": "conv2d", "filters": filters, "kernel": 3, "padding": 1}, (filters, *shape[1:]))
        elif kind in ("depthwise", "conv"):
            k, s, d = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
            pad = draw(st.integers(0, k - 1)) if k > 1 else 0
            oh, ow = _conv_out(shape, k, s, pad, d)
            if oh < 1 or ow < 1:
                continue
            groups = shape[0] if kind == "depthwise" else 1
            filters = shape[0] if kind == "depthwise" else draw(st.sampled_from([4, 8, 16, 32]))
            add({**base, "op": "conv2d", "filters": filters, "kernel": k, "stride": s, "dilation": d, "padding": pad,
                 "groups": groups, "bias": draw(st.booleans())}, (filters, oh, ow))
        elif kind == "bn":
            add({**base, "op": "batchnorm"}, shape)
        elif kind == "act":
            add({**base, "op": draw(st.sampled_from(["relu", "relu6", "leaky_relu", "sigmoid"]))}, shape)
        elif kind == "add":
            same = sorted(n for n, s in tensors.items() if s == shape)
            add({**base, "op": "add", "inputs": [src, draw(st.sampled_from(same))]}, shape)
        elif kind == "concat":
            fits = sorted(n for n, s in tensors.items() if len(s) == 3 and s[1:] == shape[1:])
            other = draw(st.sampled_from(fits))
            add({**base, "op": "concat", "inputs": [src, other]}, (shape[0] + tensors[other][0], *shape[1:]))
        elif kind == "pool":
            k, s = draw(st.integers(1, 3)), draw(st.integers(1, 2))
            pad = draw(st.integers(0, k // 2))
            oh, ow = _conv_out(shape, k, s, pad)
            if oh < 1 or ow < 1:
                continue
            op = draw(st.sampled_from(["maxpool2d", "avgpool2d"]))
            add({**base, "op": op, "kernel": k, "stride": s, "padding": pad}, (shape[0], oh, ow))
        elif kind == "global":
            add({**base, "op": draw(st.sampled_from(["global_avgpool", "global_maxpool"]))}, (shape[0], 1, 1))
        elif kind == "flatten":
            add({**base, "op": "flatten"}, (int(np.prod(shape)),))
        elif kind == "reshape":  # the same values as C×W×H: a view that convs may read
            add({**base, "op": "reshape", "shape": [shape[0], shape[2], shape[1]]}, (shape[0], shape[2], shape[1]))
        elif kind == "view":
            add({**base, "op": draw(st.sampled_from(["dropout", "identity"]))}, shape)
        elif kind == "constant":  # a per-channel constant broadcast, or a whole tensor (a residual a conv can fuse)
            k_shape = draw(st.sampled_from([(shape[0], 1, 1), shape]))
            layers.append({"name": f"{name}_k", "op": "constant", "shape": list(k_shape)})
            tensors[f"{name}_k"] = k_shape
            add({**base, "op": draw(st.sampled_from(["add", "mul", "max"])), "inputs": [src, f"{name}_k"]}, shape)
        elif kind == "movement":  # plain loops that move data: the memory plan sees more shapes
            op = draw(st.sampled_from(["transpose", "pad", "softmax"]))
            if op == "transpose":
                add({**base, "op": op, "perm": [0, 1, 3, 2]}, (shape[0], shape[2], shape[1]))
            elif op == "pad":
                add({**base, "op": op, "pads": [0, 1, 0, 0, 0, 2]}, (shape[0], shape[1] + 1, shape[2] + 2))
            else:
                add({**base, "op": op}, shape)
        elif kind == "dense":
            units = draw(st.integers(1, 20))
            add({**base, "op": "dense", "units": units}, (units,))
    if not layers:
        add({"name": "only", "op": "relu", "inputs": ["x"]}, tensors["x"])
    extra = {}
    if draw(st.booleans()):
        extra["outputs"] = draw(st.lists(st.sampled_from(sorted(tensors)), min_size=1, max_size=4, unique=True))
    description = model_dict(layers, shape=tensors["x"], name="random", seed=draw(st.integers(0, 1000)), **extra)
    return description, tensors


RANDOM = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@RANDOM
@given(networks(), st.sampled_from(TARGETS), st.sampled_from(OPT_LEVELS))
def test_random_networks_keep_the_invariants(network, target, opt_level):
    description, shapes = network
    graph = load_quietly(description)
    for name, shape in shapes.items():  # the independently tracked shapes are convc's
        assert graph.shape(name) == shape, name
    verify_pipeline(graph, target, opt_level)


@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(dags(), st.sampled_from(TARGETS), st.sampled_from(OPT_LEVELS))
def test_the_property_tests_dags_keep_the_invariants(dag, target, opt_level):
    verify_pipeline(load_quietly(dag[0]), target, opt_level)


@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(channel_vector_chains(), st.sampled_from(TARGETS))
def test_random_channel_blocked_chains_keep_the_invariants(chain, target):
    verify_pipeline(load_quietly(model_dict(chain[0], shape=chain[1])), target, 2)


# ---------------------------------------------------------------- each check catches a broken stage
def conv(name, filters, kernel=1, **kw):
    return {"name": name, "op": "conv2d", "filters": filters, "kernel": kernel, **kw}


# An inverted residual (channel-blocked a_act, e_act, d_act and s on either target), a Winograd conv with its scratch
# (reading s blocked), a view, and three outputs: fc, f (a view of w, so w is computed in f's array, C×H×W) and the
# model input x (a copy).
BASE = model_dict([conv("a", 16), {"name": "a_act", "op": "relu"}, conv("e", 32), {"name": "e_act", "op": "relu6"},
                   conv("d", 32, 3, groups=32, padding=1), {"name": "d_act", "op": "relu6"}, conv("p", 16),
                   {"name": "s", "op": "add", "inputs": ["p", "a_act"]}, conv("w", 16, 3, padding=1),
                   {"name": "f", "op": "flatten"}, {"name": "fc", "op": "dense", "units": 10}],
                  shape=(12, 12, 12), name="base", outputs=["fc", "f", "x"])


def assert_caught(fragments, check, *args) -> None:
    """check(*args) raises InvariantError with every fragment in its message."""
    with pytest.raises(InvariantError) as caught:
        check(*args)
    for fragment in fragments:
        assert fragment in str(caught.value), (fragment, str(caught.value))


@dataclasses.dataclass(frozen=True)
class Stages:
    graph: compiler.Graph
    plan: object
    arena: object
    lowered: object


def base_stages(target=AVX512) -> Stages:
    graph = optimize(load_quietly(BASE), 2)
    plan = select_kernels(graph, target, 2)
    arena = plan_memory(graph, plan)
    return Stages(graph, plan, arena, lower(graph, plan, arena))


def test_the_base_model_is_what_the_breaks_below_assume():
    for target in TARGETS:
        s = base_stages(target)
        lanes = target.lanes
        assert dict(s.plan.layouts) == {"a_act": lanes, "e_act": lanes, "d_act": lanes, "s": lanes}
        assert s.plan["s"].layouts == (lanes, lanes, lanes) and s.plan["s"].sources == ("p", "s")
        assert s.plan["w"].kernel == "winograd" and s.plan["w"].scratch_floats > 0
        assert s.plan["w"].layouts == (lanes, 0)
        assert s.arena.copies == [("x", "x")] and s.arena.buffers["w"] == s.arena.buffers["f"]
        verify_graph(s.graph)
        verify_kernel_plan(s.graph, s.plan)
        verify_memory(s.graph, s.plan, s.arena)
        verify_lowered(s.graph, s.plan, s.arena, s.lowered)


def _graph(s: Stages, edit) -> Stages:
    graph = s.graph.copy()
    edit(graph)
    return dataclasses.replace(s, graph=graph)


def _choice(s: Stages, name: str, **changes) -> Stages:
    choices = dict(s.plan.choices)
    choices[name] = dataclasses.replace(choices[name], **changes)
    return dataclasses.replace(s, plan=dataclasses.replace(s.plan, choices=MappingProxyType(choices)))


def _plan(s: Stages, **changes) -> Stages:
    changes = {k: MappingProxyType(v) if isinstance(v, dict) else v for k, v in changes.items()}
    return dataclasses.replace(s, plan=dataclasses.replace(s.plan, **changes))


def _buffer(s: Stages, name: str, scratch: bool = False, **changes) -> Stages:
    table = dict(s.arena.scratch if scratch else s.arena.buffers)
    table[name] = dataclasses.replace(table[name], **changes)
    return dataclasses.replace(s, arena=dataclasses.replace(s.arena, **{"scratch" if scratch else "buffers": table}))


def _without(table: dict, key) -> dict:
    return {k: v for k, v in table.items() if k != key}


def _call(s: Stages, layer: str, edit) -> Stages:
    index = [k.layer for k in s.lowered.kernels].index(layer)
    calls = list(s.lowered.calls)
    calls[index] = edit(calls[index])
    return dataclasses.replace(s, lowered=dataclasses.replace(s.lowered, calls=calls))


def _cycle(g):
    """a reads s (which depends on a) instead of x."""
    g.replace_layer(dataclasses.replace(g.layer("a_act"), inputs=("s",)))
    g.nx.remove_edge("x", "a_act")
    g.nx.add_edge("s", "a_act")


def _with_layer(name, **changes):
    return lambda g: g.replace_layer(dataclasses.replace(g.layer(name), **changes))


def _weight(key, value):
    return lambda g: g.weights.update({key: value})


def _fc_reads_x_too(g):
    _with_layer("fc", inputs=("f", "x"))(g)
    g.nx.add_edge("x", "fc")


GRAPH_BREAKS = {
    "a shape its op's rule does not give": (lambda g: g.nx.nodes["d_act"].update(shape=(32, 12, 11)),
                                            ["'d_act'", "32×12×11", "32×12×12"]),
    "a node without a shape": (lambda g: g.nx.nodes["d_act"].pop("shape"), ["'d_act'", "shape None"]),
    "a node without a layer": (lambda g: g.nx.add_node("stray"), ["'stray'", "no layer"]),
    "an edge that is no input": (lambda g: g.nx.add_edge("x", "d_act"), ["'d_act'", "edges"]),
    "an input without its edge": (lambda g: g.nx.remove_edge("e_act", "d_act"), ["'d_act'", "edges", "e_act"]),
    "an input that is no layer": (_with_layer("fc", inputs=("f", "ghost")), ["'fc'", "'ghost'", "not a layer"]),
    "a cycle": (_cycle, ["cycle", "a_act", "s"]),
    "an op given too many inputs": (_fc_reads_x_too, ["'fc'", "takes 1 input(s), it has 2"]),
    "a merged layer still in the graph": (_with_layer("s", merged=("p", "d_act")), ["'s'", "'d_act'", "merged"]),
    "a missing weight": (lambda g: g.weights.pop("w.weight"), ["'w.weight'", "missing"]),
    "a weight of another shape": (_weight("w.bias", np.zeros(15, np.float32)), ["'w.bias'", "15", "float32 16"]),
    "a float64 weight": (_weight("w.bias", np.zeros(16)), ["'w.bias'", "float64"]),
    "a weight no layer uses": (_weight("p.weight", np.zeros(1, np.float32)), ["'p.weight'", "no layer"]),
    "an output that is no layer": (lambda g: g.outputs.append("nowhere"), ["'nowhere'", "not layers"]),
    "an output named twice": (lambda g: g.outputs.append("fc"), ["twice"]),
    "an input that is not the input layer": (lambda g: g.inputs.append("a_act"), ["inputs", "a_act"]),
}


@pytest.mark.parametrize("case", sorted(GRAPH_BREAKS))
def test_verify_graph_catches(case):
    edit, fragments = GRAPH_BREAKS[case]
    s = _graph(base_stages(), edit)
    assert_caught(fragments, verify_graph, s.graph)


def level_1_stages() -> Stages:
    graph = optimize(load_quietly(BASE), 1)
    return Stages(graph, select_kernels(graph, AVX512, 1), None, None)


def _blocked_24_channels() -> Stages:
    """A 24-channel tensor blocked by 8 lanes on AVX2, relabelled as 16 lanes for AVX-512 (24 is not a multiple)."""
    graph = optimize(load_quietly(model_dict([conv("e", 24), conv("d", 24, 3, groups=24, padding=1), conv("p", 16),
                                              conv("z", 16, 3, stride=2, padding=1)], shape=(12, 7, 7))), 2)
    plan = select_kernels(graph, AVX2, 2)
    assert set(plan.layouts) == {"e", "d", "p"}
    widen = {name: dataclasses.replace(c, layouts=tuple(16 if n else 0 for n in c.layouts))
             for name, c in plan.choices.items()}
    plan = dataclasses.replace(plan, target=AVX512, choices=MappingProxyType(widen),
                               layouts=MappingProxyType({n: 16 for n in plan.layouts}))
    return Stages(graph, plan, None, None)


PLAN_BREAKS = {
    "a computed layer without a choice": (lambda s: _plan(s, choices=_without(s.plan.choices, "d_act")),
                                          ["'d_act'", "no kernel choice"]),
    "a choice for a view": (lambda s: _plan(s, choices={**s.plan.choices, "f": s.plan["fc"]}),
                            ["'f'", "computes nothing"]),
    "a choice for no layer": (lambda s: _plan(s, choices={**s.plan.choices, "ghost": s.plan["fc"]}),
                              ["'ghost'", "not a layer"]),
    "another layer's choice": (lambda s: _plan(s, choices={**s.plan.choices, "s": s.plan["a_act"]}),
                               ["'s'", "describes layer 'a_act'"]),
    "a kernel that is none": (lambda s: _choice(s, "fc", kernel="fastest"), ["'fc'", "'fastest' is not a kernel"]),
    "a kernel for another op": (lambda s: _choice(s, "fc", kernel="direct"), ["'fc'", "'direct'", "not dense"]),
    "a kernel that cannot take the layer": (lambda s: _choice(s, "d_act", kernel="direct"),
                                            ["'d_act'", "'direct' cannot take it", "groups = 32"]),
    "a kernel above the plan's opt level": (lambda s: _plan(s, opt_level=1), ["from opt level 2", "opt level 1"]),
    "layouts of another length": (lambda s: _choice(s, "s", layouts=(16, 0)),
                                  ["'s'", "2 layouts for 2 input(s) and the output"]),
    "another template": (lambda s: _choice(s, "w", template="ops/conv2d.c.j2"), ["'w'", "conv2d_winograd"]),
    "scratch the kernel does not ask for": (lambda s: _choice(s, "w", scratch_floats=0),
                                            ["'w'", "scratch_floats 0", "winograd"]),
    "a reader in another layout than the producer": (lambda s: _choice(s, "s", layouts=(0, 16, 16)),
                                                     ["'d_act'", "writes C/16", "'s'", "input 0 in CxHxW"]),
    "a producer in another layout than plan.layouts": (lambda s: _choice(s, "e_act", layouts=(16, 0)),
                                                       ["'e_act'", "layouts say C/16", "producer writes CxHxW"]),
    "plan.layouts missing a blocked tensor": (lambda s: _plan(s, layouts=_without(s.plan.layouts, "d_act")),
                                              ["'d_act'", "layouts say CxHxW", "producer writes C/16"]),
    "plan.layouts naming no tensor": (lambda s: _plan(s, layouts={**s.plan.layouts, "ghost": 16}), ["'ghost'"]),
    "a blocked model input": (lambda s: _plan(s, layouts={**s.plan.layouts, "x": 16}),
                              ["'x'", "model input must be C×H×W"]),
    "a blocked model output": (lambda s: _plan(_choice(s, "fc", layouts=(0, 16)), layouts={**s.plan.layouts, "fc": 16}),
                               ["'fc'", "model output must be C×H×W"]),
    "a view reading a blocked tensor": (lambda s: _plan(_choice(s, "w", layouts=(16, 16)),
                                                        layouts={**s.plan.layouts, "w": 16}),
                                        ["'w'", "'f'", "flatten, which has no kernel and reads C×H×W"]),
    "blocked by other lanes than the target's": (lambda s: _plan(s, target=AVX2),
                                                 ["'a_act'", "16 lanes", "target's vectors have 8"]),
    "blocked layouts below opt level 2": (lambda s: _plan(level_1_stages(), layouts={"e_act": 16}),
                                          ["opt level 1 stores tensors channel-blocked"]),
    "a blocked tensor whose channels are not whole vectors": (lambda s: _blocked_24_channels(),
                                                              ["'e'", "cannot be blocked by 16 lanes", "24×7×7"]),
}


@pytest.mark.parametrize("case", sorted(PLAN_BREAKS))
def test_verify_kernel_plan_catches(case):
    edit, fragments = PLAN_BREAKS[case]
    s = edit(base_stages())
    verify_graph(s.graph)
    assert_caught(fragments, verify_kernel_plan, s.graph, s.plan)


def _arena(s: Stages, **changes) -> Stages:
    return dataclasses.replace(s, arena=dataclasses.replace(s.arena, **changes))


# On AVX-512: a_act at 0 (live until s reads it), e_act at 2304, d_act at 6912, s at 2304 (e_act's block, free
# after d_act), w computed in output array 1 (f's), the Winograd scratch at 4608; 29,696 floats.
MEMORY_BREAKS = {
    "two live tensors overlapping": (lambda s: _buffer(s, "e_act", index=0), ["'a_act'", "'e_act'", "overlap"]),
    "an output over its input": (lambda s: _buffer(s, "d_act", index=2304), ["'e_act'", "'d_act'", "overlap"]),
    "scratch over a live tensor": (lambda s: _buffer(s, "w", scratch=True, index=2304),
                                   ["'w'", "scratch", "overlaps tensor 's'"]),
    "a misaligned tensor": (lambda s: _buffer(s, "d_act", index=6920), ["'d_act'", "not a multiple of 16"]),
    "a misaligned scratch": (lambda s: _buffer(s, "w", scratch=True, index=4612), ["'w'", "not a multiple of 16"]),
    "an arena too small": (lambda s: _arena(s, floats=6912 + 4608 - 16), ["'d_act'", "beyond the arena"]),
    "an arena of part lines": (lambda s: _arena(s, floats=s.arena.floats + 1), ["not a multiple of 16"]),
    "a tensor without a buffer": (lambda s: _arena(s, buffers=_without(s.arena.buffers, "e_act")),
                                  ["'e_act'", "no buffer"]),
    "a buffer for no tensor": (lambda s: _arena(s, buffers={**s.arena.buffers, "ghost": Buffer("arena", 0, 1)}),
                               ["'ghost'"]),
    "a buffer of another size": (lambda s: _buffer(s, "e_act", size=4607), ["'e_act'", "4607", "32×12×12"]),
    "a buffer of no kind": (lambda s: _buffer(s, "e_act", kind="stack"), ["'e_act'", "'stack'"]),
    "a view in its own buffer": (lambda s: _buffer(s, "f", kind="arena", index=0), ["'f'", "view", "'w'"]),
    "a computed tensor in the input": (lambda s: _buffer(s, "a_act", kind="input", index=0),
                                       ["'a_act'", "'input'"]),
    "the input in the arena": (lambda s: _buffer(s, "x", kind="arena", index=0), ["'x'", "kind='input'"]),
    "an output neither computed nor copied": (lambda s: _arena(s, copies=[]), ["output 'x'"]),
    "an output computed and copied": (lambda s: _arena(s, copies=s.arena.copies + [("fc", "fc")]),
                                      ["'fc'", "also copied"]),
    "an output copied from another tensor": (lambda s: _arena(s, copies=[("x", "a_act")]),
                                             ["output 'x'", "not from 'x' once"]),
    "a copy into no output": (lambda s: _arena(s, copies=s.arena.copies + [("a_act", "a_act")]),
                              ["'a_act'", "not an output"]),
    "a tensor in another output's array": (lambda s: _buffer(_buffer(s, "w", index=0), "f", index=0),
                                           ["output 'f'"]),
    "no scratch": (lambda s: _arena(s, scratch={}), ["'w'", "needs", "arena scratch"]),
    "too little scratch": (lambda s: _buffer(s, "w", scratch=True, size=s.arena.scratch["w"].size - 1),
                           ["'w'", "needs", "arena scratch"]),
    "scratch nobody needs": (lambda s: _arena(s, scratch={**s.arena.scratch, "s": Buffer("arena", 0, 16)}),
                             ["'s'", "needs none"]),
}


@pytest.mark.parametrize("case", sorted(MEMORY_BREAKS))
def test_verify_memory_catches(case):
    edit, fragments = MEMORY_BREAKS[case]
    s = base_stages(AVX512)
    assert s.arena.buffers["e_act"].index == 2304 and s.arena.buffers["d_act"].index == 6912
    assert s.arena.buffers["s"].index == 2304 and s.arena.scratch["w"].index == 4608
    s = edit(s)
    verify_kernel_plan(s.graph, s.plan)
    assert_caught(fragments, verify_memory, s.graph, s.plan, s.arena)


def _lowered(s: Stages, **changes) -> Stages:
    return dataclasses.replace(s, lowered=dataclasses.replace(s.lowered, **changes))


def _args(edit):
    return lambda call: dataclasses.replace(call, args=edit(call.args))


def _swap_first_kernels(s: Stages) -> Stages:
    kernels = list(s.lowered.kernels)
    kernels[0], kernels[1] = kernels[1], kernels[0]
    return _lowered(s, kernels=kernels)


def _kernel(s: Stages, index: int, **changes) -> Stages:
    kernels = list(s.lowered.kernels)
    kernels[index] = dataclasses.replace(kernels[index], **changes)
    return _lowered(s, kernels=kernels)


def _misaligned_weights(s: Stages) -> Stages:
    offsets = dict(s.lowered.weights.offsets)
    offsets[("w", "weight")] += 1
    return _lowered(s, weights=dataclasses.replace(s.lowered.weights, offsets=offsets))


LOWERED_BREAKS = {
    "a call reading another tensor": (lambda s: _call(s, "d_act", _args(lambda a: (Pointer("arena", 0),) + a[1:])),
                                      ["'d_act'", "input 0 ('e_act')", "offset=0", "offset=2304"]),
    "a call writing another array": (lambda s: _call(s, "fc", _args(lambda a: a[:1] + (Pointer("y1"),) + a[2:])),
                                     ["'fc'", "output is Pointer(base='y1'"]),
    "a call without its scratch": (lambda s: _call(s, "w", _args(lambda a: a[:-1])),
                                   ["'w'", "4 arguments, expected 5"]),
    "a call of another function": (lambda s: _call(s, "w", lambda c: dataclasses.replace(c, fn="L9_other")),
                                   ["'w'", "L9_other"]),
    "kernels out of order": (_swap_first_kernels, ["kernel functions", "topological order"]),
    "a missing call": (lambda s: _lowered(s, calls=s.lowered.calls[:-1]), ["5 calls for 6 computed layers"]),
    "another kernel than the plan's": (lambda s: _kernel(s, 0, kernel="plain"), ["'a_act'", "'plain'", "'direct'"]),
    "weights read at another offset": (
        lambda s: _call(s, "a_act", _args(lambda a: tuple(Pointer("convc_weights", 1) if p.base == "convc_weights"
                                                          else p for p in a))),
        ["'a_act'", "weights '", "offset=1"]),
    "misaligned weights": (_misaligned_weights, ["'w'", "not 64-byte aligned"]),
    "a missing copy": (lambda s: _lowered(s, copies=[]), ["copies []", "y2"]),
    "profile slots without profiled layers": (
        lambda s: _lowered(s, calls=[dataclasses.replace(c, profile_slot=i) for i, c in enumerate(s.lowered.calls)]),
        ["profile slots [0, 1, 2, 3, 4, 5]"]),
    "another arena": (lambda s: _lowered(s, arena=dataclasses.replace(s.arena, floats=s.arena.floats + 16)),
                      ["another memory plan"]),
    "other layouts": (lambda s: _lowered(s, layouts={}), ["layouts {}"]),
    "metadata of another arena": (lambda s: _lowered(s, metadata={**s.lowered.metadata, "arena_floats": 1}),
                                  ["arena_floats 1"]),
    "sample tensors without the input": (lambda s: _lowered(s, sample_tensors=s.lowered.sample_tensors[1:]),
                                         ["sample tensors"]),
}


@pytest.mark.parametrize("case", sorted(LOWERED_BREAKS))
def test_verify_lowered_catches(case):
    edit, fragments = LOWERED_BREAKS[case]
    s = edit(base_stages(AVX512))
    verify_memory(s.graph, s.plan, s.arena)
    assert_caught(fragments, verify_lowered, s.graph, s.plan, s.arena, s.lowered)


# ---------------------------------------------------------------- verify_pipeline checks between the passes
def changes_a_shape(graph):
    g = graph.copy()
    g.nx.nodes["fc"]["shape"] = (11,)
    return g


def edits_its_input(graph):
    graph.weights["fc.bias"] = graph.weights["fc.bias"] * 2
    return graph.copy()


def drops_an_output(graph):
    g = graph.copy()
    g.outputs = g.outputs[:1]
    return g


@pytest.mark.parametrize("bad_pass, fragments", [
    (changes_a_shape, ["after pass changes_a_shape", "'fc'", "shape 11"]),
    (edits_its_input, ["after pass edits_its_input", "changed its input graph"]),
    (drops_an_output, ["after pass drops_an_output", "outputs were ['fc', 'f', 'x'], now ['fc']"]),
], ids=lambda v: getattr(v, "__name__", ""))
def test_verify_pipeline_checks_after_every_pass(monkeypatch, bad_pass, fragments):
    graph = load_quietly(BASE)
    verify_pipeline(graph, AVX2, 1)
    monkeypatch.setitem(PIPELINES, 1, [*PIPELINES[1], bad_pass])
    assert_caught(fragments, verify_pipeline, graph, AVX2, 1)
