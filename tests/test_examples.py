"""Every bundled example compiles with deterministic weights and matches the interpreter."""
import numpy as np
import pytest

import compiler
from conftest import EXAMPLES, assert_close, random_input

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))


def test_examples_exist():
    names = {p.stem for p in EXAMPLE_FILES}
    assert {"lenet5", "vgg_cifar", "resnet_small"} <= names


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_example_matches_interpreter(path):
    graph = compiler.load(path)
    model = compiler.compile(graph)
    x = random_input(graph.shape(graph.inputs[0]), batch=3, seed=1)
    got = model(x)
    ref = compiler.interpret(graph, {graph.inputs[0]: x}, dtype=np.float64)[graph.outputs[0]]
    assert_close(got, ref)
    # Batch elements are independent: sample 1 alone gives the same row.
    assert_close(model(x[1:2])[0], ref[1])


def test_deterministic_init_is_stable():
    a, b = compiler.load(EXAMPLES / "lenet5.yaml"), compiler.load(EXAMPLES / "lenet5.yaml")
    assert a.weights.keys() == b.weights.keys()
    for k in a.weights:
        np.testing.assert_array_equal(a.weights[k], b.weights[k])
    other = compiler.load({**_lenet_dict(), "seed": 1})
    assert not np.array_equal(other.weights["conv1.weight"], a.weights["conv1.weight"])


def _lenet_dict():
    import yaml
    return yaml.safe_load((EXAMPLES / "lenet5.yaml").read_text())


def test_json_and_yaml_are_the_same_format(tmp_path):
    import json
    data = _lenet_dict()
    (tmp_path / "lenet.json").write_text(json.dumps(data))
    a, b = compiler.load(EXAMPLES / "lenet5.yaml"), compiler.load(tmp_path / "lenet.json")
    assert [l.name for l in a.layers()] == [l.name for l in b.layers()]
    assert all(np.array_equal(a.weights[k], b.weights[k]) for k in a.weights)


def test_weights_file_from_torch_state_dict(tmp_path):
    """A PyTorch state_dict saved with numpy.savez loads as is (including num_batches_tracked)."""
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential()
    net.add_module("conv", torch.nn.Conv2d(3, 4, 3, padding=1))
    net.add_module("bn", torch.nn.BatchNorm2d(4))
    net.add_module("act", torch.nn.ReLU())
    net.add_module("flat", torch.nn.Flatten())
    net.add_module("fc", torch.nn.Linear(4 * 6 * 6, 5))
    with torch.no_grad():
        net.bn.running_mean.uniform_(-1, 1)
        net.bn.running_var.uniform_(0.5, 2)
        net.bn.weight.uniform_(0.5, 1.5)
    net.eval()
    np.savez(tmp_path / "w.npz", **{k: v.numpy() for k, v in net.state_dict().items()})
    desc = {"name": "t", "input": {"name": "x", "shape": [3, 6, 6]}, "weights": "w.npz",
            "layers": [{"name": "conv", "op": "conv2d", "filters": 4, "kernel": 3, "padding": 1},
                       {"name": "bn", "op": "batchnorm"}, {"op": "relu"}, {"op": "flatten"},
                       {"name": "fc", "op": "dense", "units": 5}]}
    import yaml
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(desc))
    graph = compiler.load(tmp_path / "m.yaml")
    x = random_input((3, 6, 6), batch=2)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    got = compiler.compile(graph)(x)
    assert_close(got, want, rtol=1e-4, atol=1e-5)
