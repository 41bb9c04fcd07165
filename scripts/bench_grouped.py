"""Time the grouped-convolution kernel against onnxruntime: single zoo-shaped grouped layers and whole models
(torchvision's RegNet / ResNeXt exported to ONNX, e.g. by /work/tools/zoo_export.py), convc/ORT medians.

"before" forces the grouped layers onto the plain loops (what they got before the grouped kernel); "after" is
the default choice. Each convc build runs against the same onnxruntime session, interleaved (bench.timing).

    python scripts/bench_grouped.py --march native --march x86-64-v3 --threads 2 [--models /tmp/zoo/regnet_x_400mf.onnx ...]

Run from the repository root. Not a test: it prints a table and takes minutes.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import compiler  # noqa: E402
from bench.run import ort_session  # noqa: E402
from bench.timing import interleaved  # noqa: E402

# name -> (C = K, groups, input map): grouped 3×3, padding 1, stride 1, bias, relu (as after batchnorm folding)
LAYERS = {
    "regnet_x_400mf s3 (160 ch, 10 groups of 16, 14x14)": (160, 10, 14),
    "regnet_x_400mf s4 (400 ch, 25 groups of 16, 7x7)": (400, 25, 7),
    "regnet_y_400mf s3 (208 ch, 26 groups of 8, 14x14)": (208, 26, 14),
    "resnext50 s1 (128 ch, 32 groups of 4, 56x56)": (128, 32, 56),
    "resnext50 s2 (256 ch, 32 groups of 8, 28x28)": (256, 32, 28),
    "resnext50 s3 (512 ch, 32 groups of 16, 14x14)": (512, 32, 14),
    "resnext50 s4 (1024 ch, 32 groups of 32, 7x7)": (1024, 32, 7),
}


def layer_onnx(c: int, groups: int, size: int, folder: Path) -> Path:
    import torch

    net = torch.nn.Sequential(torch.nn.Conv2d(c, c, 3, padding=1, groups=groups), torch.nn.ReLU()).eval()
    path = folder / f"grouped_{c}_{groups}_{size}.onnx"
    torch.onnx.export(net, torch.randn(1, c, size, size), str(path), opset_version=17, dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {0: "N"}})
    return path


def grouped_layers(graph, march) -> list[str]:
    return [name for name, c in compiler.plan_kernels(graph, march=march).choices.items() if c.kernel == "grouped"]


def measure(label: str, path: Path, marches: list[str], threads: int, budget: float) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", compiler.ConvcWarning)
        graph = compiler.load(path)
    data = path.read_bytes()
    x = np.random.default_rng(0).standard_normal((1, *graph.shape(graph.inputs[0]))).astype(np.float32)
    session = ort_session(data, threads)
    x_in = session.get_inputs()[0].name
    ref = session.run(None, {x_in: x})[0]
    engines = {"ort": lambda: session.run(None, {x_in: x})}
    for march in marches:
        forced = {name: "plain" for name in grouped_layers(graph, march)}
        for when, kernels in (("before", forced), ("after", None)):
            start = time.perf_counter()
            model = compiler.compile(graph, march=march, threads=threads, kernels=kernels)
            took = time.perf_counter() - start
            err = float(np.abs(model(x).reshape(ref.shape) - ref).max() / max(1e-30, np.abs(ref).max()))
            print(f"  built {march} {when}: {took:.1f} s, {len(forced)} grouped layers, max rel err vs ORT {err:.1e}",
                  flush=True)
            engines[f"{march} {when}"] = lambda m=model: m(x)
    timings = interleaved(engines, warmup=2, budget_s=budget)
    ort = timings["ort"].median
    cells = [f"ORT {ort * 1e3:.2f} ms"] + [f"{k} {t.median * 1e3:.2f} ms ({t.median / ort:.2f}x)"
                                           for k, t in timings.items() if k != "ort"]
    print(f"{label}: " + "; ".join(cells), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--march", action="append", help="targets (default: native)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--budget", type=float, default=6.0, help="seconds of timing per layer or model")
    p.add_argument("--models", nargs="*", default=[], help="ONNX files of whole models")
    p.add_argument("--no-layers", action="store_true")
    args = p.parse_args()
    marches = args.march or ["native"]
    if not args.no_layers:
        with tempfile.TemporaryDirectory() as folder:
            for label, (c, groups, size) in LAYERS.items():
                measure(label, layer_onnx(c, groups, size, Path(folder)), marches, args.threads, args.budget)
    for path in args.models:
        measure(Path(path).stem, Path(path), marches, args.threads, args.budget * 3)


if __name__ == "__main__":
    main()
