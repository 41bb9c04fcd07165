"""torchvision's CNNs with random weights, exported to ONNX by both torch.onnx exporters, compiled by convc and
compared with onnxruntime on the same file. Shared by tests/test_torchvision_zoo.py and scripts/zoo_table.py.

Importing torchvision: the wheel the package registry serves (torchvision 0.28.0) is a CUDA build. Next to the
CPU torch its native library `torchvision/_C.so` does not load, so the op schemas it would register are missing,
and `import torchvision` fails in its fake-tensor registrations with "operator torchvision::nms does not exist".
`import_torchvision` then defines the two schemas those registrations need (`nms` and `qnms`, as `_C.so`
declares them) with `torch.library` and imports again. The classification and segmentation models need none of
torchvision's native ops. Install it with `pip install --no-deps torchvision==0.28.0 pillow` so that it keeps
the CPU torch.

The comparison: convc and onnxruntime run the same .onnx file on the same random batch of 2; the first output's
shape must be equal and its error max|convc - ort| / max|ort| at most `REL_TOL` (1e-4).
"""
from __future__ import annotations

import dataclasses
import math
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

REL_TOL = 1e-4
BATCH = 2
EXPORTERS = ("torchscript", "dynamo")  # torch.onnx.export(dynamo=False, opset 17) and (dynamo=True, opset 18)

_torchvision_schemas = None  # the torch.library.Library that defines them must outlive the import


def import_torchvision():
    """`import torchvision`, defining its `nms` and `qnms` schemas first when its native library cannot load."""
    global _torchvision_schemas
    try:
        import torchvision
    except RuntimeError as error:
        if "torchvision::nms" not in str(error):
            raise
        if _torchvision_schemas is None:
            _torchvision_schemas = torch.library.Library("torchvision", "DEF")
            _torchvision_schemas.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            _torchvision_schemas.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        import torchvision
    return torchvision


@dataclasses.dataclass(frozen=True)
class ZooModel:
    """A torchvision model: its builder's name and keyword arguments and its input size (square, 3 channels)."""

    name: str
    size: int = 224
    kwargs: tuple[tuple[str, object], ...] = ()
    segmentation: bool = False


_SEGMENTATION = (("weights_backbone", None),)
MODELS = {m.name: m for m in [
    ZooModel("alexnet"), ZooModel("vgg11_bn"), ZooModel("resnet18"), ZooModel("resnet50"),
    ZooModel("resnext50_32x4d"), ZooModel("wide_resnet50_2"), ZooModel("densenet121"),
    ZooModel("googlenet", kwargs=(("aux_logits", False), ("init_weights", True))),
    ZooModel("inception_v3", 299, kwargs=(("aux_logits", False), ("init_weights", True))),
    ZooModel("squeezenet1_0"), ZooModel("squeezenet1_1"), ZooModel("mobilenet_v2"),
    ZooModel("mobilenet_v3_small"), ZooModel("mobilenet_v3_large"), ZooModel("shufflenet_v2_x1_0"),
    ZooModel("mnasnet1_0"), ZooModel("efficientnet_b0"), ZooModel("efficientnet_v2_s"),
    ZooModel("regnet_x_400mf"), ZooModel("regnet_y_400mf"), ZooModel("convnext_tiny"),
    ZooModel("fcn_resnet50", kwargs=_SEGMENTATION + (("aux_loss", False),), segmentation=True),
    ZooModel("deeplabv3_mobilenet_v3_large", kwargs=_SEGMENTATION + (("aux_loss", False),), segmentation=True),
    ZooModel("lraspp_mobilenet_v3_large", kwargs=_SEGMENTATION, segmentation=True),
]}


def build(name: str, seed: int = 0):
    """The model `name` in eval mode with random weights. torchvision initializes the weights at random already;
    besides, every BatchNorm gets random running statistics and affine parameters (else, freshly built, it is
    the identity and folding it is not tested), every LayerNorm random affine parameters, and ConvNeXt's layer
    scales (1e-6 at init, which would hide each block's branch under the tolerance) values in [0.2, 1).
    A segmentation model returns its dict's "out"."""
    spec = MODELS[name]
    models = import_torchvision().models
    torch.manual_seed(seed)
    builder = getattr(models.segmentation if spec.segmentation else models, name)
    net = builder(weights=None, **dict(spec.kwargs))
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
            if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.LayerNorm)) and module.weight is not None:
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
            if hasattr(module, "layer_scale") and isinstance(module.layer_scale, torch.nn.Parameter):
                module.layer_scale.uniform_(0.2, 1.0)
    return (OutputOut(net) if spec.segmentation else net).eval()


class OutputOut(torch.nn.Module):
    """A segmentation model whose output is its dict's "out" tensor, so that the export has one plain output."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)["out"]


def export(net, path: Path, exporter: str, size: int, batch: int = BATCH) -> str:
    """Write `net` to `path` as ONNX for inputs of `batch`×3×`size`×`size`, with a dynamic batch axis where the
    exporter allows it. Returns "dynamic" or, when the exporter refused a dynamic batch, "static"."""
    x = torch.randn(batch, 3, size, size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            torch.onnx.export(net, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"],
                              output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
            return "dynamic"
        if exporter != "dynamo":
            raise ValueError(f"unknown exporter {exporter!r}: expected one of {EXPORTERS}")
        try:
            program = torch.onnx.export(net, (x,), None, dynamo=True, verbose=False, input_names=["x"],
                                        output_names=["y"], dynamic_shapes={"x": {0: torch.export.Dim("N")}})
            batch_axis = "dynamic"
        except ImportError:
            raise
        except Exception:  # noqa: BLE001 - torch.export could not trace the model with a symbolic batch
            program = torch.onnx.export(net, (x,), None, dynamo=True, verbose=False, input_names=["x"],
                                        output_names=["y"])
            batch_axis = "static"
        program.save(str(path))
        return batch_axis


@dataclasses.dataclass
class Outcome:
    """What one model × exporter gave: "ok", "refused" (convc raised a ModelError: it cannot compile the model),
    or "mismatch" (another output shape than onnxruntime's, or an error over `REL_TOL`)."""

    name: str
    exporter: str
    size: int
    outcome: str = ""
    rel_error: float = math.nan
    compile_seconds: float = math.nan
    batch_axis: str = ""
    message: str = ""
    convc_shape: tuple = ()
    ort_shape: tuple = ()


def run(name: str, exporter: str, size: int | None = None, workdir: Path | None = None,
        cache_dir: str | Path | None = None, seed: int = 0) -> Outcome:
    """Export `name` with `exporter` at `size` (default its full size), compile it with convc (default opt level;
    `cache_dir` None: convc's default cache, as $CONVC_CACHE_DIR sets it), run it and onnxruntime on one random
    batch, and compare. convc's ModelError is the outcome "refused" with its message (the file's temporary
    folder left out); anything else, a BuildError too, raises."""
    import onnxruntime

    import compiler

    size = size or MODELS[name].size
    result = Outcome(name, exporter, size)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = Path(tmp) / f"{name}_{exporter}.onnx"
        result.batch_axis = export(build(name, seed), path, exporter, size)
        x = np.random.default_rng(seed).standard_normal((BATCH, 3, size, size)).astype(np.float32)
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        want = session.run(None, {session.get_inputs()[0].name: x})[0]
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", compiler.ConvcWarning)
                model = compiler.compile(compiler.load(path), cache_dir=cache_dir)
        except compiler.ModelError as error:
            result.outcome, result.message = "refused", str(error).replace(str(path), path.name)
            return result
        result.compile_seconds = time.perf_counter() - start
        got = model(x)
        if isinstance(got, tuple):
            got = got[0]
    result.convc_shape, result.ort_shape = tuple(got.shape), tuple(want.shape)
    if got.shape != want.shape:
        result.outcome, result.message = "mismatch", f"shape {got.shape} != onnxruntime's {want.shape}"
        return result
    result.rel_error = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
    result.outcome = "ok" if result.rel_error <= REL_TOL else "mismatch"
    return result
