"""The benchmark's models as convc descriptions (weights from a seed): LeNet-5, CIFAR VGG, ResNet-18, MobileNetV2."""
from __future__ import annotations

from pathlib import Path

import yaml

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _example(name: str) -> dict:
    return yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())


def lenet5() -> dict:
    return _example("lenet5")


def vgg_cifar() -> dict:
    """64,64,M,128,128,M,256,256,M with batchnorm, global pool, dense (examples/vgg_cifar.yaml)."""
    return _example("vgg_cifar")


def _conv_bn(layers: list, name: str, src: str, filters: int, kernel: int, stride: int = 1, groups: int = 1,
             act: str | None = "relu") -> str:
    layers.append({"name": name, "op": "conv2d", "filters": filters, "kernel": kernel, "stride": stride,
                   "padding": kernel // 2, "groups": groups, "bias": False, "inputs": [src]})
    layers.append({"name": f"{name}_bn", "op": "batchnorm", "inputs": [name]})
    if act is None:
        return f"{name}_bn"
    layers.append({"name": f"{name}_{act}", "op": act, "inputs": [f"{name}_bn"]})
    return f"{name}_{act}"


def resnet18(classes: int = 1000) -> dict:
    """torchvision's resnet18 layout for 3×224×224."""
    layers: list = []
    x = _conv_bn(layers, "conv1", "image", 64, 7, 2)
    layers.append({"name": "maxpool", "op": "maxpool2d", "kernel": 3, "stride": 2, "padding": 1, "inputs": [x]})
    x, channels = "maxpool", 64
    for stage, width in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            stride = 2 if stage > 1 and block == 0 else 1
            p = f"layer{stage}_{block}"
            h = _conv_bn(layers, f"{p}_conv1", x, width, 3, stride)
            h = _conv_bn(layers, f"{p}_conv2", h, width, 3, 1, act=None)
            shortcut = x
            if stride != 1 or channels != width:
                shortcut = _conv_bn(layers, f"{p}_down", x, width, 1, stride, act=None)
            layers.append({"name": f"{p}_add", "op": "add", "inputs": [h, shortcut]})
            layers.append({"name": f"{p}_relu", "op": "relu", "inputs": [f"{p}_add"]})
            x, channels = f"{p}_relu", width
    layers += [{"name": "avgpool", "op": "global_avgpool", "inputs": [x]}, {"name": "flatten", "op": "flatten"},
               {"name": "fc", "op": "dense", "units": classes}]
    return {"name": "resnet18", "input": {"name": "image", "shape": [3, 224, 224]}, "seed": 0, "layers": layers}


def mobilenet_v2(classes: int = 1000) -> dict:
    """torchvision's mobilenet_v2 (width 1.0) for 3×224×224: inverted residuals, depthwise convs, ReLU6."""
    layers: list = []
    x = _conv_bn(layers, "stem", "image", 32, 3, 2, act="relu6")
    channels, index = 32, 0
    for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                       (6, 320, 1, 1)):
        for i in range(n):
            stride, p, hidden = (s if i == 0 else 1), f"block{index}", channels * t
            h = x
            if t != 1:
                h = _conv_bn(layers, f"{p}_expand", h, hidden, 1, act="relu6")
            h = _conv_bn(layers, f"{p}_dw", h, hidden, 3, stride, groups=hidden, act="relu6")
            h = _conv_bn(layers, f"{p}_project", h, c, 1, act=None)
            if stride == 1 and channels == c:
                layers.append({"name": f"{p}_add", "op": "add", "inputs": [h, x]})
                h = f"{p}_add"
            x, channels, index = h, c, index + 1
    x = _conv_bn(layers, "head", x, 1280, 1, act="relu6")
    layers += [{"name": "avgpool", "op": "global_avgpool", "inputs": [x]}, {"name": "flatten", "op": "flatten"},
               {"name": "dropout", "op": "dropout", "rate": 0.2}, {"name": "fc", "op": "dense", "units": classes}]
    return {"name": "mobilenet_v2", "input": {"name": "image", "shape": [3, 224, 224]}, "seed": 0, "layers": layers}


MODELS = {"lenet5": lenet5, "vgg_cifar": vgg_cifar, "resnet18": resnet18, "mobilenet_v2": mobilenet_v2}
