"""PyTorch -> ONNX -> convc for the normalization, resampling and transposed-convolution layers, as the two
exporters write them: a small encoder-decoder with ConvNeXt's LayerNorm2d, GroupNorm (exported as Reshape ->
InstanceNormalization -> Reshape -> Mul -> Add), InstanceNorm2d, LayerNorm over the last axis, F.interpolate
(nearest and bilinear) and ConvTranspose2d, compiled and compared with PyTorch (float32: rtol 1e-4, atol 1e-5)."""
import importlib.util
import io
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
nn = torch.nn
F = nn.functional

import compiler  # noqa: E402
from compiler.errors import ConvcWarning  # noqa: E402
from compiler.passes import optimize  # noqa: E402

RTOL, ATOL = 1e-4, 1e-5


class LayerNorm2d(nn.LayerNorm):
    """torchvision's convnext LayerNorm2d: permute to N×H×W×C, normalize the channels, permute back."""

    def forward(self, x):
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                            self.eps).permute(0, 3, 1, 2)


class EncoderDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 2, 2)
        self.ln2d = LayerNorm2d(16, eps=1e-6)
        self.down = nn.Conv2d(16, 24, 3, 2, 1)
        self.gn = nn.GroupNorm(4, 24)
        self.up = nn.ConvTranspose2d(24, 12, 3, 2, 1, output_padding=1)
        self.inorm = nn.InstanceNorm2d(12, affine=True)
        self.ln = nn.LayerNorm(24)
        self.head = nn.Conv2d(12, 5, 1)

    def forward(self, x):
        y = self.ln2d(self.stem(x))
        y = torch.relu(self.gn(self.down(y)))
        y = self.inorm(self.up(y))
        y = self.ln(y)  # over the last axis (W = 24)
        y = F.interpolate(y, scale_factor=2, mode="nearest")
        return F.interpolate(self.head(y), size=(21, 19), mode="bilinear", align_corners=False)


def randomized(net: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():  # norms start as weight 1, bias 0: make every term matter
            p.add_(0.2 * torch.randn_like(p))
    return net.eval()


EXPORTERS = ["torchscript", pytest.param("dynamo", marks=pytest.mark.skipif(
    importlib.util.find_spec("onnxscript") is None, reason="torch.onnx.export(dynamo=True) needs onnxscript"))]


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_encoder_decoder_matches_torch(tmp_path, exporter):
    net = randomized(EncoderDecoder())
    path = tmp_path / "net.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            torch.onnx.export(net, (torch.zeros(1, 3, 24, 48),), str(path), dynamo=True, verbose=False)
        else:
            torch.onnx.export(net, (torch.zeros(1, 3, 24, 48),), str(path), dynamo=False, opset_version=17)
        graph = compiler.load(path)
        model = compiler.compile(graph)
    x = np.random.default_rng(1).standard_normal((1, 3, 24, 48)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model(x), want, rtol=RTOL, atol=ATOL)
    ops = [layer.op for layer in optimize(graph, 2).layers()]
    assert ops.count("layernorm") == 2 and "transpose" not in ops, ops  # LayerNorm2d became one layer
    assert {"instancenorm", "conv_transpose2d", "upsample"} <= set(ops)
