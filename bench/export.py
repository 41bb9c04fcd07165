"""The same graph, same weights, for the other engines: a PyTorch eager module and an ONNX model.

Both are built from the convc graph before optimization (onnxruntime and PyTorch get the
batchnorms and activations as separate ops and do their own fusion).
"""
from __future__ import annotations

import numpy as np

from compiler.ir import Graph


def _pads(layer, graph: Graph) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) as resolved by convc (also for "same")."""
    ah, aw = layer.spec.axes(layer, graph.in_shapes(layer.name)[0])
    return ah.pad_lo, aw.pad_lo, ah.pad_hi, aw.pad_hi


def torch_module(graph: Graph):
    """A torch.nn.Module that runs `graph` with torch.nn.functional, layer by layer."""
    import torch
    import torch.nn.functional as F

    weights = {k: torch.from_numpy(np.ascontiguousarray(v, np.float32)) for k, v in graph.weights.items()}
    layers = [layer for layer in graph.layers() if layer.op != "input"]
    pads = {layer.name: _pads(layer, graph) for layer in layers if layer.op in ("conv2d", "maxpool2d")}

    def run_layer(layer, xs):
        a, w, x = layer.attrs, (lambda s: weights.get(f"{layer.name}.{s}")), xs[0]
        if layer.op == "conv2d":
            t, left, b, r = pads[layer.name]
            if (t, left) != (b, r):
                x, t, left = F.pad(x, (left, r, t, b)), 0, 0
            return F.conv2d(x, w("weight"), w("bias"), a.stride, (t, left), a.dilation, a.groups)
        if layer.op == "batchnorm":
            return F.batch_norm(x, w("running_mean"), w("running_var"), w("weight"), w("bias"), False, 0.0, a.eps)
        if layer.op == "relu":
            return F.relu(x)
        if layer.op == "relu6":
            return F.relu6(x)
        if layer.op == "maxpool2d":
            t, left, b, r = pads[layer.name]
            if (t, left) != (b, r):
                raise NotImplementedError("asymmetric maxpool padding")
            return F.max_pool2d(x, a.kernel, a.stride or a.kernel, (t, left), a.dilation, a.ceil_mode)
        if layer.op == "global_avgpool":
            return F.adaptive_avg_pool2d(x, 1)
        if layer.op == "flatten":
            return torch.flatten(x, 1)
        if layer.op == "dropout":
            return x
        if layer.op == "dense":
            return F.linear(torch.flatten(x, 1), w("weight"), w("bias"))
        if layer.op == "add":
            return sum(xs[1:], xs[0])
        if layer.op == "softmax":
            return F.softmax(x, dim=1)
        raise NotImplementedError(f"bench: no PyTorch mapping for op {layer.op!r}")

    class GraphModule(torch.nn.Module):
        def forward(self, x):
            values = {graph.inputs[0]: x}
            for layer in layers:
                values[layer.name] = run_layer(layer, [values[i] for i in layer.inputs])
            return values[graph.outputs[0]]

    return GraphModule().eval()


def onnx_model(graph: Graph, opset: int = 17):
    """An onnx.ModelProto of `graph` with a dynamic batch axis."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []

    def const(name: str, array) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array, np.float32), name))
        return name

    for layer in graph.layers():
        if layer.op == "input":
            continue
        a, n, ins = layer.attrs, layer.name, list(layer.inputs)
        w = graph.layer_weights(n)
        if layer.op == "conv2d":
            args = ins + [const(f"{n}.weight", w["weight"])] + ([const(f"{n}.bias", w["bias"])] if a.bias else [])
            nodes.append(helper.make_node("Conv", args, [n], name=n, kernel_shape=list(a.kernel),
                                          strides=list(a.stride), dilations=list(a.dilation), group=a.groups,
                                          pads=list(_pads(layer, graph))))
        elif layer.op == "batchnorm":
            args = ins + [const(f"{n}.{s}", w[s]) for s in ("weight", "bias", "running_mean", "running_var")]
            nodes.append(helper.make_node("BatchNormalization", args, [n], name=n, epsilon=a.eps))
        elif layer.op == "relu":
            nodes.append(helper.make_node("Relu", ins, [n], name=n))
        elif layer.op == "relu6":
            lo, hi = const(f"{n}.min", np.float32(0)), const(f"{n}.max", np.float32(6))
            nodes.append(helper.make_node("Clip", ins + [lo, hi], [n], name=n))
        elif layer.op == "maxpool2d":
            nodes.append(helper.make_node("MaxPool", ins, [n], name=n, kernel_shape=list(a.kernel),
                                          strides=list(a.stride or a.kernel), dilations=list(a.dilation),
                                          pads=list(_pads(layer, graph)), ceil_mode=int(a.ceil_mode)))
        elif layer.op == "global_avgpool":
            nodes.append(helper.make_node("GlobalAveragePool", ins, [n], name=n))
        elif layer.op in ("flatten", "dense"):
            src = ins[0]
            if layer.op == "dense" or len(graph.shape(src)) != 1:
                nodes.append(helper.make_node("Flatten", [src], [f"{n}.flat"], axis=1))
                src = f"{n}.flat"
            if layer.op == "flatten":
                nodes.append(helper.make_node("Identity", [src], [n], name=n))
            else:
                args = [src, const(f"{n}.weight", w["weight"])] + ([const(f"{n}.bias", w["bias"])] if a.bias else [])
                nodes.append(helper.make_node("Gemm", args, [n], name=n, transB=1))
        elif layer.op == "dropout":
            nodes.append(helper.make_node("Identity", ins, [n], name=n))
        elif layer.op == "add":
            acc = ins[0]
            for i, other in enumerate(ins[1:]):
                out = n if i == len(ins) - 2 else f"{n}.{i}"
                nodes.append(helper.make_node("Add", [acc, other], [out]))
                acc = out
        elif layer.op == "softmax":
            nodes.append(helper.make_node("Softmax", ins, [n], name=n, axis=1))
        else:
            raise NotImplementedError(f"bench: no ONNX mapping for op {layer.op!r}")
    x = graph.inputs[0]
    out = graph.outputs[0]
    g = helper.make_graph(
        nodes, graph.name, [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", *graph.shape(x)])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", *graph.shape(out)])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
