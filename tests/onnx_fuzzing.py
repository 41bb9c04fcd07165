"""ONNX mutation fuzzing: real models, edited at the protobuf level so they stay well-formed but lie.

Used by tests/test_onnx_fuzz.py (bounded, in CI) and scripts/onnx_fuzz.py (long runs). The seeds are the
light models that ship inside the onnx package and the three examples converted to ONNX here (one with
its weights in an external-data file). A case applies one to three mutations (MUTATIONS) to a seed and
sends the file through compiler.load -> compile -> call. The allowed outcomes:
- "ok": the compiled result matches onnxruntime where onnxruntime runs the mutated model, else the
  interpreter ("ok-ort" / "ok-interpreter");
- ModelError or ShapeError whose message names the file and something in it (a node, tensor, input or
  output, the opset) -- NAMES_NOTHING lists the whole-file messages allowed to name nothing more;
- "overflow": onnxruntime does not run the model and some tensor of the float64 interpreter lies
  outside the float32 range (weights read from garbage bytes), so a float32 result is not defined
  to compare; counted apart, so a run shows how often it happens.
Anything else is a failure: another exception, a BuildError or LibraryError (the generated C of an
accepted model must build), a mismatch, a message naming nothing; a crash kills the process, and a
case past the hang limit is stopped by faulthandler.
"""
from __future__ import annotations

import copy
import multiprocessing
import os
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import compiler
from compiler import ConvcWarning, ModelError, ShapeError

ROOT = Path(__file__).resolve().parent.parent
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
LIGHT_MODELS = ["squeezenet", "shufflenet", "inception_v1", "resnet50", "inception_v2", "densenet121",
                "bvlc_alexnet", "zfnet512", "vgg19"]
EXAMPLES = ["lenet5", "vgg_cifar", "resnet_small"]
EXTERNAL = "resnet_small_external"  # resnet_small with its initializers in an external-data file

HUGE = [2**31, 2**31 - 1, 2**40, 2**62]
BAD_DIMS = [-1, -7, 0] + HUGE + [1, 3, 1000]
BAD_INTS = [-1, 0, 1, 2, 3, 7, 2**31, 2**62, -(2**62)]
FLOAT32_MAX = float(np.finfo(np.float32).max)
# A layer whose float64 values reach this can overflow float32 inside a sum of up to 2**16 terms (a conv's
# partial sums, in the compiled kernels' order of addition) even though its own result fits: such a case is
# "overflow", not compared. (Found with a BatchNorm scale of 1.7e36 read from a lying external-data offset:
# values of 3e37, and onnxruntime and the kernels both gave NaN.)
OVERFLOW_RISK = FLOAT32_MAX / 2**16
RTOL, ATOL_FRACTION = 1e-3, 1e-4  # float32 through up to 120 layers vs float32 onnxruntime / float64 interpreter

# Messages about the whole file, which have no node or tensor to name.
NAMES_NOTHING = ("not a readable ONNX model", "opset", "no run-time input", "protobuf files are limited",
                 "no graph", "has no name")


# ---------------------------------------------------------------- seeds
def example_to_onnx(name: str) -> onnx.ModelProto:
    """An example description as ONNX (weights from its seed), for the ops the examples use."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvcWarning)
        graph = compiler.load(ROOT / "examples" / f"{name}.yaml")
    nodes, inits = [], []
    x = graph.inputs[0]

    def weight(layer, suffix, shape=None):
        value = graph.weights[f"{layer.name}.{suffix}"]
        inits.append(numpy_helper.from_array(value.reshape(shape) if shape else value, f"{layer.name}.{suffix}"))
        return f"{layer.name}.{suffix}"

    for layer in graph.layers():
        a, ins, out = layer.attrs, list(layer.inputs), layer.name
        if layer.op == "input":
            continue
        if layer.op == "conv2d":
            ins += [weight(layer, "weight")] + ([weight(layer, "bias")] if a.bias else [])
            nodes.append(helper.make_node("Conv", ins, [out], name=out, kernel_shape=list(a.kernel),
                                          strides=list(a.stride), pads=list(a.padding), dilations=list(a.dilation),
                                          group=a.groups))
        elif layer.op == "maxpool2d":
            nodes.append(helper.make_node("MaxPool", ins, [out], name=out, kernel_shape=list(a.kernel),
                                          strides=list(a.stride or a.kernel), pads=list(a.padding),
                                          ceil_mode=int(a.ceil_mode)))
        elif layer.op == "batchnorm":
            ins += [weight(layer, s) for s in ("weight", "bias", "running_mean", "running_var")]
            nodes.append(helper.make_node("BatchNormalization", ins, [out], name=out, epsilon=a.eps))
        elif layer.op == "dense":
            ins += [weight(layer, "weight")] + ([weight(layer, "bias")] if a.bias else [])
            nodes.append(helper.make_node("Gemm", ins, [out], name=out, transB=1))
        elif layer.op == "softmax":
            nodes.append(helper.make_node("Softmax", ins, [out], name=out, axis=a.axis))  # both count the batch as axis 0
        else:
            op_type = {"relu": "Relu", "add": "Add", "flatten": "Flatten", "global_avgpool": "GlobalAveragePool",
                       "dropout": "Dropout"}[layer.op]
            nodes.append(helper.make_node(op_type, ins, [out], name=out))
    onnx_graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", *graph.shape(x)])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["N", *graph.shape(o)]) for o in graph.outputs], inits)
    model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@dataclass
class Seed:
    name: str
    model: onnx.ModelProto
    external: bytes | None = None  # the external-data file's bytes, for a seed whose weights live there
    batch: int = 2


def load_seed(name: str) -> Seed:
    if name in LIGHT_MODELS:
        return Seed(name, onnx.load(str(LIGHT / f"light_{name}.onnx")), batch=1)  # they declare batch 1
    if name == EXTERNAL:
        model = example_to_onnx("resnet_small")
        data = bytearray()
        for init in model.graph.initializer:  # lay the tensors out one after another, 16-byte aligned
            raw = numpy_helper.to_array(init).tobytes()
            data += bytes(-len(data) % 16)
            onnx.external_data_helper.set_external_data(init, "weights.bin", offset=len(data), length=len(raw))
            init.ClearField("float_data")
            init.ClearField("raw_data")
            init.data_location = TensorProto.EXTERNAL
            data += raw
        return Seed(name, model, bytes(data))
    model = example_to_onnx(name)
    for init in model.graph.initializer:  # numpy_helper writes raw_data; some mutations lie about its length
        assert init.HasField("raw_data")
    return Seed(name, model)


# ---------------------------------------------------------------- mutations
Mutation = Callable[[onnx.ModelProto, np.random.Generator], str]
MUTATIONS: dict[str, Mutation] = {}


def mutation(fn: Mutation) -> Mutation:
    MUTATIONS[fn.__name__] = fn
    return fn


def pick(rng: np.random.Generator, items):
    items = list(items)
    return items[int(rng.integers(len(items)))] if items else None


def _shapes(model) -> list[tuple[str, list]]:
    """Every declared shape: graph inputs, outputs and value_info (their dims), and initializer dims."""
    out = []
    for kind, infos in (("input", model.graph.input), ("output", model.graph.output),
                        ("value_info", model.graph.value_info)):
        for info in infos:
            if info.type.HasField("tensor_type") and info.type.tensor_type.HasField("shape"):
                out.append((f"{kind} {info.name}", info.type.tensor_type.shape.dim))
    for init in model.graph.initializer:
        out.append((f"initializer {init.name}", init.dims))
    return out


@mutation
def dims(model, rng) -> str:
    """A declared dimension becomes negative, zero or huge (or symbolic)."""
    where, dim_list = pick(rng, [s for s in _shapes(model) if len(s[1])]) or (None, None)
    if dim_list is None:
        return "dims: nothing to change"
    i = int(rng.integers(len(dim_list)))
    value = pick(rng, BAD_DIMS)
    if isinstance(dim_list[i], int) or not hasattr(dim_list[i], "dim_value"):
        dim_list[i] = value
    elif rng.random() < 0.1:
        dim_list[i].dim_param = "free"
    else:
        dim_list[i].dim_value = value
    return f"dims: {where} axis {i} = {value}"


def _attribute_values(rng, attr) -> list:
    """Values of the wrong type for `attr`, or of its type but hostile."""
    wrong = [1.5, -2.0, "SAME_UPPER", b"\xff\xfe", [1.5, 2.5], [1, 2, 3, 4, 5, 6], [], [-1, -1], [2**62],
             numpy_helper.from_array(np.zeros((2, 2), np.float32), "t"), ["a", "b"]]
    if attr.type == onnx.AttributeProto.INT:
        return wrong + BAD_INTS
    if attr.type == onnx.AttributeProto.INTS:
        n = max(len(attr.ints), 1)
        return wrong + [[pick(rng, BAD_INTS)] * n, [0] * n, [1] * (n + 1), [-1] + [1] * (n - 1), list(attr.ints[:-1])]
    if attr.type == onnx.AttributeProto.FLOAT:
        return wrong + [float("nan"), float("inf"), -1.0, 0.0, 1e30, 7]
    return wrong


@mutation
def attribute_type(model, rng) -> str:
    """An attribute gets a value of another type (or a hostile one of its own type)."""
    node = pick(rng, [n for n in model.graph.node if n.attribute])
    if node is None:
        return "attribute_type: no attributes"
    k = int(rng.integers(len(node.attribute)))
    old = node.attribute[k]
    value = pick(rng, _attribute_values(rng, old))
    new = helper.make_attribute(old.name, value) if not isinstance(value, list) or value else \
        helper.make_attribute(old.name, value, attr_type=old.type if old.type in (6, 7, 8) else 7)
    node.attribute[k].CopyFrom(new)
    return f"attribute_type: node {node.name or node.output[0]} {old.name} = {str(value)[:40]}"


@mutation
def attribute_missing(model, rng) -> str:
    node = pick(rng, [n for n in model.graph.node if n.attribute])
    if node is None:
        return "attribute_missing: no attributes"
    k = int(rng.integers(len(node.attribute)))
    name = node.attribute[k].name
    del node.attribute[k]
    return f"attribute_missing: node {node.name or node.output[0]} {name}"


@mutation
def initializer_missing(model, rng) -> str:
    if not model.graph.initializer:
        return _constant_node_lies(model, rng)
    k = int(rng.integers(len(model.graph.initializer)))
    name = model.graph.initializer[k].name
    del model.graph.initializer[k]
    return f"initializer_missing: {name}"


@mutation
def initializer_duplicated(model, rng) -> str:
    if not model.graph.initializer:
        return _constant_node_lies(model, rng)
    init = pick(rng, model.graph.initializer)
    twin = model.graph.initializer.add()
    twin.CopyFrom(init)
    if rng.random() < 0.5 and twin.dims and twin.data_location != TensorProto.EXTERNAL:  # a twin of another size
        value = _readable(twin)
        if value is not None and value.ndim:
            twin.CopyFrom(numpy_helper.from_array(np.concatenate([value, value], axis=0), init.name))
    return f"initializer_duplicated: {init.name}"


def _readable(tensor) -> np.ndarray | None:
    """The tensor's value, or None if an earlier mutation left it unreadable."""
    try:
        return numpy_helper.to_array(tensor)
    except Exception:
        return None


@mutation
def initializer_resized(model, rng) -> str:
    """An initializer of another shape, its data consistent with its dims (the model's other tensors are not)."""
    inits = [i for i in model.graph.initializer if i.data_location != TensorProto.EXTERNAL and i.dims]
    if not inits:
        return _constant_node_lies(model, rng)
    init = pick(rng, inits)
    value = _readable(init)
    if value is None or not value.ndim:  # an earlier mutation already broke it
        return f"initializer_resized: {init.name} left as it is"
    axis = int(rng.integers(value.ndim))
    choice = rng.integers(4)
    if choice == 0 and value.shape[axis] > 1:
        value = np.take(value, range(value.shape[axis] - 1), axis=axis)
    elif choice == 1:
        value = np.concatenate([value, np.take(value, [0], axis=axis)], axis=axis)
    elif choice == 2:
        value = value.reshape(-1)
    else:
        value = value.reshape((1, *value.shape))
    init.CopyFrom(numpy_helper.from_array(value, init.name))
    return f"initializer_resized: {init.name} -> {list(value.shape)}"


@mutation
def raw_data_lies(model, rng) -> str:
    inits = [i for i in model.graph.initializer if i.HasField("raw_data")]
    if not inits:
        return _constant_node_lies(model, rng)
    init = pick(rng, inits)
    raw = init.raw_data
    cut = pick(rng, [0, 1, 3, len(raw) // 2, len(raw) - 1, len(raw) + 1, len(raw) + 4, 2 * len(raw)])
    init.raw_data = raw[:cut] if cut <= len(raw) else raw + bytes(cut - len(raw))
    return f"raw_data_lies: {init.name} {len(raw)} -> {cut} bytes"


def _constant_node_lies(model, rng) -> str:
    """The light models keep their weights in nodes (Constant, ConstantOfShape): make one lie instead."""
    nodes = [n for n in model.graph.node if n.op_type in ("Constant", "ConstantOfShape")]
    node = pick(rng, nodes)
    if node is None:
        return "constant: none"
    for a in node.attribute:
        if a.type == onnx.AttributeProto.TENSOR:
            t = a.t
            choice = rng.integers(3)
            value = _readable(t)
            if choice == 0 and value is not None:
                t.raw_data = value.tobytes()[:-1]
                t.ClearField("float_data")
            elif choice == 1:
                t.dims.append(int(pick(rng, [0, 2, 2**40])))
            else:
                t.data_type = int(pick(rng, [TensorProto.INT64, TensorProto.STRING, 0, 999]))
            return f"constant: node {node.name or node.output[0]} tensor lies ({choice})"
    return f"constant: node {node.name or node.output[0]} has no tensor"


@mutation
def external_data_lies(model, rng) -> str:
    inits = [i for i in model.graph.initializer if i.data_location == TensorProto.EXTERNAL]
    if not inits:
        return raw_data_lies(model, rng)
    init = pick(rng, inits)
    entries = {e.key: e for e in init.external_data}
    key = pick(rng, ["offset", "length", "location", "offset", "length"])
    value = pick(rng, {"offset": ["-1", "-4096", "3", "999999999", str(2**62), "x", "", "1.5"],
                       "length": ["0", "-1", "1", "100000000", str(2**62), str(2**63 - 1), "zz"],
                       "location": ["missing.bin", "../weights.bin", "/etc/passwd", "", ".", "weights.bin\0x",
                                    "/dev/zero"]}[key])
    if key in entries:
        entries[key].value = value
    else:
        entry = init.external_data.add()
        entry.key, entry.value = key, value
    return f"external_data_lies: {init.name} {key} = {value!r}"


@mutation
def dangling_input(model, rng) -> str:
    node = pick(rng, [n for n in model.graph.node if n.input])
    k = int(rng.integers(len(node.input)))
    node.input[k] = pick(rng, ["nowhere", "", node.output[0]])
    return f"dangling_input: node {node.name or node.output[0]} input {k} = {node.input[k]!r}"


@mutation
def cycle(model, rng) -> str:
    """A node reads a later node's output (or nodes swap places), so the graph is cyclic or unsorted."""
    nodes = model.graph.node
    if len(nodes) < 2:
        return "cycle: too few nodes"
    i, j = sorted(rng.choice(len(nodes), 2, replace=False).tolist())
    if rng.random() < 0.5 and nodes[i].input:
        nodes[i].input[0] = nodes[j].output[0]
        return f"cycle: node {i} reads node {j}'s output"
    a, b = copy.deepcopy(nodes[i]), copy.deepcopy(nodes[j])
    nodes[i].CopyFrom(b)
    nodes[j].CopyFrom(a)
    return f"cycle: nodes {i} and {j} swapped"


@mutation
def duplicated_output(model, rng) -> str:
    nodes = model.graph.node
    choice = rng.integers(3)
    if choice == 0 and len(nodes) >= 2:
        i, j = rng.choice(len(nodes), 2, replace=False).tolist()
        nodes[j].output[0] = nodes[i].output[0]
        return f"duplicated_output: nodes {i} and {j} both write {nodes[i].output[0]!r}"
    if choice == 1:
        listed = pick(rng, model.graph.output)
        model.graph.output.add().CopyFrom(listed)
        return f"duplicated_output: graph output {listed.name!r} listed twice"
    node = pick(rng, nodes)
    node.output[0] = pick(rng, [i.name for i in model.graph.input])
    return f"duplicated_output: node writes the graph input {node.output[0]!r}"


@mutation
def data_type(model, rng) -> str:
    types = [TensorProto.INT64, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.STRING, TensorProto.BOOL,
             TensorProto.UNDEFINED, 999]
    if model.graph.initializer and rng.random() < 0.6:
        init = pick(rng, model.graph.initializer)
        init.data_type = int(pick(rng, types))
        return f"data_type: initializer {init.name} -> {init.data_type}"
    info = pick(rng, list(model.graph.input) + list(model.graph.output))
    info.type.tensor_type.elem_type = int(pick(rng, types))
    return f"data_type: {info.name} -> {info.type.tensor_type.elem_type}"


@mutation
def opset_lies(model, rng) -> str:
    choice = rng.integers(3)
    if choice == 0 or not model.opset_import:
        value = int(pick(rng, [-1, 0, 1, 3, 5, 6, 7, 9, 11, 12, 13, 17, onnx.defs.onnx_opset_version() + 1,
                               10**6]))
        if not model.opset_import:
            model.opset_import.add()
        model.opset_import[0].domain = ""
        model.opset_import[0].version = value
        return f"opset_lies: default domain opset {value}"
    if choice == 1:
        del model.opset_import[:]
        return "opset_lies: no opset imports"
    extra = model.opset_import.add()
    extra.domain, extra.version = pick(rng, [("", 7), ("ai.onnx", 1), ("com.example", 1)])
    return f"opset_lies: another import {extra.domain!r} {extra.version}"


# ---------------------------------------------------------------- onnxruntime in its own process
def _ort_serve(conn) -> None:
    import onnxruntime
    onnxruntime.set_default_logger_severity(4)
    while True:
        path, feeds = conn.recv()
        try:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1
            session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            conn.send(("ok", session.run(None, feeds)))
        except Exception as e:
            conn.send(("rejected", f"{type(e).__name__}: {str(e)[:200]}"))


class OrtWorker:
    """onnxruntime in a child process: a mutated model may crash or hang it, and that is not convc's outcome."""

    def __init__(self, timeout: float = 120):
        self.timeout = timeout
        self.proc = None
        self.crashes = 0

    def _start(self):
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_ort_serve, args=(child,), daemon=True)
        self.proc.start()

    def run(self, path: Path, feeds: dict) -> tuple[str, object]:
        if self.proc is None or not self.proc.is_alive():
            self._start()
        self.conn.send((str(path), feeds))
        if self.conn.poll(self.timeout):
            try:
                return self.conn.recv()
            except EOFError:
                pass
        self.close()
        self.crashes += 1
        return "crashed", "onnxruntime died or hung"

    def close(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.join()
            self.proc = None


# ---------------------------------------------------------------- one case
@dataclass
class Outcome:
    name: str  # ok-ort, ok-interpreter, ModelError, ShapeError, or FAIL
    detail: str = ""
    mutations: list[str] = field(default_factory=list)


def _names(model) -> set[str]:
    g = model.graph
    names = {n.name for n in g.node} | {o for n in g.node for o in n.output} | {i for n in g.node for i in n.input}
    names |= {i.name for i in g.input} | {o.name for o in g.output} | {i.name for i in g.initializer}
    return {n for n in names if n}


def error_names_something(message: str, model, path: Path) -> bool:
    if str(path) not in message:
        return False
    rest = message.replace(str(path), "")
    return any(f"'{n}'" in rest or f'"{n}"' in rest for n in _names(model)) or any(p in rest for p in NAMES_NOTHING)


def write_case(seed: Seed, model: onnx.ModelProto, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{seed.name}.onnx"
    path.write_bytes(model.SerializeToString())
    if seed.external is not None:
        (folder / "weights.bin").write_bytes(seed.external)
    return path


def mutate(seed: Seed, rng: np.random.Generator) -> tuple[onnx.ModelProto, list[str]]:
    """A copy of the seed with one mutation (most cases), two or three."""
    model = onnx.ModelProto()
    model.CopyFrom(seed.model)
    count = int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
    return model, [MUTATIONS[pick(rng, sorted(MUTATIONS))](model, rng) for _ in range(count)]


def run_case(seed: Seed, case_seed: int, folder: Path, ort: OrtWorker | None, opt_level: int | None = None,
             cache_dir=None) -> Outcome:
    """Mutate `seed` (deterministically from case_seed), then load, compile, run and judge the outcome."""
    rng = np.random.default_rng(case_seed)
    try:
        model, done = mutate(seed, rng)
    except Exception as e:  # a bug of the fuzzer's own: reported, and the run goes on
        return Outcome("FAIL", f"the mutation itself failed: {type(e).__name__}: {e}\n{traceback.format_exc()}")
    level = int(rng.integers(3)) if opt_level is None else opt_level
    path = write_case(seed, model, folder)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvcWarning)
            graph = compiler.load(path)
    except (ModelError, ShapeError) as e:
        if not error_names_something(str(e), model, path):
            return Outcome("FAIL", f"{type(e).__name__} names no node, tensor or file: {e}", done)
        return Outcome(type(e).__name__, str(e), done)
    except Exception as e:
        return Outcome("FAIL", f"load raised {type(e).__name__}: {e}\n{traceback.format_exc()}", done)
    try:
        model_ = compiler.compile(graph, opt_level=level, cache_dir=cache_dir)
        data = np.random.default_rng(case_seed)  # every run-time input (a removed initializer makes one more)
        x = {name: data.standard_normal((seed.batch, *graph.shape(name))).astype(np.float32) for name in graph.inputs}
        got = model_.run(x)
    except Exception as e:
        return Outcome("FAIL", f"an accepted model failed to compile or run at opt level {level}: "
                               f"{type(e).__name__}: {e}\n{traceback.format_exc()}", done)
    return _judge(graph, model, path, x, got, ort, done, level)


def _judge(graph, model, path, x, got, ort, done, level) -> Outcome:
    outputs = list(graph.outputs)
    reference, source = None, "interpreter"
    if ort is not None:
        status, value = ort.run(path, x)
        if status == "ok" and all(np.all(np.isfinite(v)) for v in value):
            # convc's outputs are the declared outputs in order (a name listed twice gets a copy of its own)
            if len(value) == len(outputs) and all(np.size(v) == got[o].size for o, v in zip(outputs, value)):
                reference = {o: np.asarray(v, np.float64).reshape(got[o].shape) for o, v in zip(outputs, value)}
                source = "ort"
            else:  # onnxruntime ran it but returned other outputs or sizes: checked against the interpreter
                source = "interpreter-ort-differs"
    if reference is None:
        every = compiler.interpret(graph, x, dtype=np.float64, all_layers=True)
        beyond = [name for name, v in every.items()
                  if v.size and not (np.all(np.isfinite(v)) and np.max(np.abs(v)) <= OVERFLOW_RISK)]
        if beyond:  # weights made of garbage bytes: float32 overflows where the float64 reference does not
            return Outcome("overflow", f"layer {beyond[0]!r} comes within 2**16 of the float32 range", done)
        reference = {o: every[o] for o in outputs}
    for o in outputs:
        ref = reference[o]
        scale = float(np.max(np.abs(ref))) if ref.size and np.all(np.isfinite(ref)) else 1.0
        bad = ~np.isclose(got[o], ref, rtol=RTOL, atol=ATOL_FRACTION * max(scale, 1e-6), equal_nan=True)
        if np.any(bad):
            worst = float(np.nanmax(np.abs(got[o] - ref)))
            return Outcome("FAIL", f"output {o!r} differs from {source} at opt level {level}: "
                                   f"{int(bad.sum())} values, max abs error {worst:.3g} (scale {scale:.3g})", done)
    return Outcome(f"ok-{source}", "", done)
