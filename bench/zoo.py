"""`python -m bench --zoo`: torchvision's CNNs (random weights) as the users' models are, exported to ONNX by
torch.onnx (TorchScript, opset 17) and timed as convc, onnxruntime on that file, and PyTorch eager on the
module itself."""
from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import compiler

from .torchvision_zoo import MODELS as ZOO, build, export


def bench_zoo_model(name: str, batches: list[int], threads_list: list[int], budget_s: float, opt_level: int,
                    engines: list[str], pause_s: float, march: str):
    from .run import bench_engines
    net = build(name)
    with tempfile.TemporaryDirectory(prefix="convc-zoo-") as tmp:
        path = Path(tmp) / f"{name}.onnx"
        export(net, path, "torchscript", ZOO[name].size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", compiler.ConvcWarning)
            graph = compiler.load(path)
        onnx_bytes = path.read_bytes() if "onnxruntime" in engines else None
    return bench_engines(name, graph, net if "torch" in engines else None, onnx_bytes, batches, threads_list,
                         budget_s, opt_level, pause_s, march)
