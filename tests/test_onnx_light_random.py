"""The 9 "light" models of onnx/backend/test/data/light with random weights, convc vs onnxruntime.

Why: the light models' weights come from ConstantOfShape nodes (every weight 0.02), so 8 of their 9 reference
outputs are a uniform softmax (every value 0.001) that a wrong kernel could still reproduce
(test_onnx_light_models.py). Here every learned parameter is replaced by a random initializer of the same
shape, scaled so activations stay O(1) through the depth:
- Conv/Gemm/MatMul weights: He-style normal, std sqrt(2 / fan_in), fan_in from the consumer's view of the tensor;
- biases and additive terms: normal, std 0.1;
- BatchNormalization (and the Unsqueeze -> Mul/Add batchnorm of DenseNet): scale and variance 1 +- 0.1 (uniform,
  so the variance stays positive), bias and mean normal with std 0.1.
A parameter feeding any other op makes the test fail (so a new role is noticed, not guessed).

The final Softmax is dropped and the logits before it are compared: a softmax over 1000 classes squashes
differences (an error of 1e-2 in a logit changes a probability by ~1e-5), so comparing logits is strictly
stronger. Both runtimes get the same ModelProto and the same N(0, 1) input; onnxruntime (CPU provider) is the
reference. convc runs N=1 and N=2 (the models declare batch 1, so onnxruntime runs each sample of the N=2
batch separately). Tolerance: rtol 1e-3, atol 1e-4 * max|reference| (float32 accumulation through 20-120
layers). The test also checks each sample's logits are far from uniform (std across classes > 5% of the
largest |logit|), so the comparison can fail.
"""
from __future__ import annotations

import os
import time
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper, shape_inference  # noqa: E402

from compiler import pipeline  # noqa: E402
from compiler.errors import ConvcWarning  # noqa: E402
from compiler.frontends.onnx import graph_from_model  # noqa: E402

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
MODELS = ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet", "squeezenet",
          "vgg19", "zfnet512"]
SMALL = {"bvlc_alexnet", "squeezenet", "shufflenet", "inception_v1", "zfnet512"}  # also run at N=2
RTOL, ATOL_FRACTION = 1e-3, 1e-4
SHAPE_ONLY = {"Unsqueeze", "Reshape", "Identity"}  # a parameter passes through these to its real consumer


def _consumers(graph) -> dict[str, list[tuple]]:
    uses: dict[str, list[tuple]] = {}
    for node in graph.node:
        for index, name in enumerate(node.input):
            uses.setdefault(name, []).append((node, index))
    return uses


def _role(name: str, uses: dict, shapes: dict) -> tuple[str, int]:
    """What a parameter tensor is, and for weights the fan-in: followed through shape-only ops."""
    roles = set()
    for node, index in uses.get(name, []):
        if node.op_type in SHAPE_ONLY and index == 0:
            roles.add(_role(node.output[0], uses, shapes))
            continue
        op, view = node.op_type, shapes.get(name)
        if (op, index) == ("Conv", 1):
            roles.add(("weight", int(np.prod(view[1:]))))
        elif (op, index) == ("Gemm", 1):
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            roles.add(("weight", int(view[1] if trans_b else view[0])))
        elif (op, index) == ("MatMul", 1):
            roles.add(("weight", int(view[-2])))
        elif (op, index) in {("Conv", 2), ("Gemm", 2), ("BatchNormalization", 2), ("BatchNormalization", 3)} or \
                op in {"Add", "Sum", "Sub"}:
            roles.add(("shift", 0))
        elif (op, index) in {("BatchNormalization", 1), ("BatchNormalization", 4)} or op == "Mul":
            roles.add(("scale", 0))
        else:
            raise AssertionError(f"parameter {name!r} feeds {op} input {index}: no random role for it")
    assert len(roles) == 1, f"parameter {name!r} has roles {roles}"
    return roles.pop()


def randomize(model: onnx.ModelProto, seed: int = 0) -> onnx.ModelProto:
    """A copy of the model with every float constant (ConstantOfShape output or float initializer) replaced by
    a random initializer, scaled by its role, and the final Softmax dropped (its input becomes the output)."""
    model = shape_inference.infer_shapes(model)
    graph = model.graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(graph.value_info) + list(graph.input) + list(graph.output)}
    inits = {i.name: i for i in graph.initializer}
    params = {}  # name -> shape
    for node in graph.node:
        if node.op_type == "ConstantOfShape":
            params[node.output[0]] = [int(d) for d in numpy_helper.to_array(inits[node.input[0]])]
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT:
            params[init.name] = list(init.dims)
    shapes.update(params)
    uses = _consumers(graph)
    rng = np.random.default_rng(seed)
    new_inits = []
    for name, shape in params.items():
        if name not in uses:  # an unused float (ZFNet-512 declares one): dropped with the ConstantOfShapes
            continue
        kind, fan_in = _role(name, uses, shapes)
        if kind == "weight":
            value = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        elif kind == "shift":
            value = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.1)
        else:
            value = (1 + rng.uniform(-0.1, 0.1, shape)).astype(np.float32)
        new_inits.append(numpy_helper.from_array(value, name))
    kept_nodes = [n for n in graph.node if not (n.op_type == "ConstantOfShape" and n.output[0] in params)]
    output = graph.output[0]
    last = next(n for n in kept_nodes if output.name in n.output)
    outputs = [output]
    if last.op_type == "Softmax":
        kept_nodes.remove(last)
        outputs = [helper.make_tensor_value_info(last.input[0], TensorProto.FLOAT, None)]
    used = {name for node in kept_nodes for name in node.input}
    kept_inits = [i for i in graph.initializer if i.name not in params and i.name in used]
    constants = set(params) | {i.name for i in graph.initializer}
    runtime_inputs = [i for i in graph.input if i.name not in constants]
    new_graph = helper.make_graph(kept_nodes, graph.name, runtime_inputs, outputs,
                                  initializer=kept_inits + new_inits)
    # IR version 4+: initializers need not be listed as graph inputs.
    return helper.make_model(new_graph, opset_imports=model.opset_import, ir_version=max(model.ir_version, 4))


def convc_library(model: onnx.ModelProto):
    graph = graph_from_model(model, f"<random-weight {model.graph.name}>")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvcWarning)
        pipeline.validate_structure(graph)
        pipeline.infer_shapes(graph)
        pipeline.validate_weights(graph)
        return pipeline.compile(graph)


def onnxruntime_session(model: onnx.ModelProto):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def run_random_model(name: str, batches=(1,)) -> dict:
    """Randomize one light model, run it with onnxruntime and convc; returns outputs and timings."""
    start = time.perf_counter()
    model = randomize(onnx.load(os.path.join(LIGHT, f"light_{name}.onnx")))
    randomize_seconds = time.perf_counter() - start
    input_name = model.graph.input[0].name
    sample_shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim][1:]
    x = np.random.default_rng(1).standard_normal((max(batches), *sample_shape), dtype=np.float32)
    start = time.perf_counter()
    session = onnxruntime_session(model)
    ref = np.concatenate([session.run(None, {input_name: x[i:i + 1]})[0] for i in range(len(x))])
    del session
    ort_seconds = time.perf_counter() - start
    start = time.perf_counter()
    lib = convc_library(model)
    compile_seconds = time.perf_counter() - start
    del model
    start = time.perf_counter()
    got = {n: np.asarray(lib(x[:n])).reshape(ref[:n].shape) for n in batches}
    run_seconds = time.perf_counter() - start
    return {"ref": ref, "got": got, "randomize_seconds": randomize_seconds, "ort_seconds": ort_seconds,
            "compile_seconds": compile_seconds, "run_seconds": run_seconds, "cache_hit": lib.build_info.cache_hit}


def errors(result: dict) -> dict:
    ref = result["ref"]
    scale = float(np.abs(ref).max())
    worst = max(float(np.abs(got - ref[:len(got)]).max()) for got in result["got"].values())
    return {"max_abs_error": worst, "ref_max": scale, "relative_to_max": worst / scale}


@pytest.mark.parametrize("name", MODELS)
def test_random_weights_match_onnxruntime(name):
    result = run_random_model(name, (1, 2) if name in SMALL else (1,))
    ref = result["ref"]
    # Not uniform: the logits of a sample spread over classes, so a wrong kernel would show.
    spread = ref.reshape(len(ref), -1).std(axis=1)
    assert (spread > 0.05 * np.abs(ref).max()).all() and (spread > 1e-2).all(), f"{name}: logits nearly uniform"
    e = errors(result)
    print(f"\n{name}: max abs error {e['max_abs_error']:.3g}, max |ref| {e['ref_max']:.3g}, "
          f"relative to max {e['relative_to_max']:.3g}; randomize {result['randomize_seconds']:.1f} s, "
          f"onnxruntime {result['ort_seconds']:.1f} s, convc compile {result['compile_seconds']:.1f} s"
          f"{' (cache hit)' if result['cache_hit'] else ''}, run {result['run_seconds']:.1f} s")
    for n, got in result["got"].items():
        np.testing.assert_allclose(got, ref[:n], rtol=RTOL, atol=ATOL_FRACTION * e["ref_max"],
                                   err_msg=f"{name} N={n}")
