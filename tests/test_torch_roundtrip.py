"""PyTorch -> ONNX -> convc: classic architectures built here, exported with torch.onnx.export, compiled by
convc and compared with PyTorch's own output on random batches (N = 1 and N = 3)."""
import io
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
nn = torch.nn

import compiler  # noqa: E402
from compiler.errors import ConvcWarning  # noqa: E402

RTOL, ATOL = 1e-3, 1e-4  # float32 throughout, but summation orders differ over deep networks


def lenet5() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10))


def vgg_bn() -> nn.Module:
    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
    return nn.Sequential(*block(3, 16), *block(16, 16), nn.MaxPool2d(2), *block(16, 32), *block(32, 32),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.5), nn.Linear(32 * 8 * 8, 64), nn.ReLU(),
                         nn.Linear(64, 10), nn.Softmax(dim=1))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNet18(nn.Module):
    """torchvision's resnet18 layout (stem, 4 stages of 2 basic blocks), narrower to keep the test fast."""

    def __init__(self, width=16, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        layers, cin = [], width
        for i, cout in enumerate([width, 2 * width, 4 * width, 8 * width]):
            stride = 1 if i == 0 else 2
            layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        layers = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
                   nn.ReLU6(), nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV2(nn.Module):
    """MobileNetV2's structure (t, c, n, s table) at width 0.25 and fewer repeats."""

    def __init__(self, classes=10):
        super().__init__()
        layers = [nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6()]
        cin = 8
        for t, c, n, s in [(1, 8, 1, 1), (6, 8, 2, 2), (6, 16, 2, 2), (6, 24, 2, 1), (6, 32, 2, 2)]:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers += [nn.Conv2d(cin, 64, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU6()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(64, classes))

    def forward(self, x):
        x = self.features(x)
        return self.classifier(x.mean([2, 3]))


MODELS = {
    "lenet5": (lenet5, (1, 28, 28)),
    "vgg_bn": (vgg_bn, (3, 32, 32)),
    "resnet18": (ResNet18, (3, 64, 64)),
    "mobilenet_v2": (MobileNetV2, (3, 64, 64)),
}


def build(name: str) -> tuple[nn.Module, tuple]:
    factory, shape = MODELS[name]
    torch.manual_seed(0)
    model = factory()
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():  # non-trivial inference statistics, so batchnorm is really exercised
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=gen) * 0.4 - 0.2)
    return model.eval(), shape


def export(model: nn.Module, shape: tuple, path, dynamic_batch: bool) -> None:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, *shape),), buffer, dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}} if dynamic_batch else None)
    path.write_bytes(buffer.getvalue())


def roundtrip_errors(name: str, tmp_path, dynamic_batch: bool = True) -> dict[int, float]:
    """Max abs error of convc vs PyTorch per batch size."""
    model, shape = build(name)
    path = tmp_path / f"{name}.onnx"
    export(model, shape, path, dynamic_batch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvcWarning)
        lib = compiler.compile(path)
    errors = {}
    for n in (1, 3):
        x = torch.randn(n, *shape, generator=torch.Generator().manual_seed(n))
        with torch.no_grad():
            ref = model(x).numpy()
        got = lib(x.numpy())
        np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL, err_msg=f"{name}, N={n}")
        errors[n] = float(np.abs(got - ref).max())
    return errors


@pytest.mark.parametrize("name", list(MODELS))
def test_roundtrip(name, tmp_path):
    errors = roundtrip_errors(name, tmp_path)
    print(f"{name}: max abs error vs PyTorch {errors}")


def test_roundtrip_with_the_batch_fixed_at_export(tmp_path):
    # Without dynamic axes the exporter bakes N = 1 into reshapes; convc still runs any N.
    roundtrip_errors("lenet5", tmp_path, dynamic_batch=False)
