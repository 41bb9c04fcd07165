"""Time the grouped-convolution kernel against onnxruntime: single zoo-shaped grouped layers and whole models
(torchvision's RegNet / ResNeXt exported to ONNX, e.g. by /work/tools/zoo_export.py), convc/ORT medians.

"before" forces the grouped layers onto the plain loops (what they got before the grouped kernel); "after" is
the default choice. Each convc build runs against the same onnxruntime session, interleaved (runtime.timing).

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
from bench.peak import SOURCE as PEAK_SOURCE  # noqa: E402
from runtime.timing import interleaved  # noqa: E402

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


def fma_peak(march: str, threads: int, iters: int = 20_000_000) -> float:
    """bench/peak.py's FMA loop with the target's vector width (its 12 accumulators fit 16 ymm registers too),
    built for `march`: GFLOP/s."""
    import os
    import subprocess
    lanes = compiler.Target.from_march(march).lanes
    source = (PEAK_SOURCE.replace("vector_size(64)", f"vector_size({4 * lanes})")
              .replace("i < 16;", f"i < {lanes};").replace("2.0 * 16 *", f"2.0 * {lanes} *"))
    with tempfile.TemporaryDirectory(prefix="convc-peak-") as tmp:
        src, exe = Path(tmp) / "peak.c", Path(tmp) / "peak"
        src.write_text(source)
        subprocess.run(["cc", "-O2", f"-march={march}", "-fopenmp", str(src), "-o", str(exe)], check=True)
        out = subprocess.run([str(exe), str(iters)], check=True, capture_output=True, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    return float(out.stdout.strip())


def grouped_layers(graph, march) -> list[str]:
    return [name for name, c in compiler.plan_kernels(graph, march=march).choices.items() if c.kernel == "grouped"]


def measure(label: str, path: Path, marches: list[str], threads: int, budget: float, flops: float = 0.0,
            peaks: dict[str, float] | None = None) -> None:
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
    if flops and peaks:
        print("  after: " + "; ".join(f"{march} {flops / timings[f'{march} after'].median / 1e9:.0f} GFLOP/s = "
                                      f"{flops / timings[f'{march} after'].median / 1e9 / peaks[march]:.0%} of its "
                                      f"FMA peak ({peaks[march]:.0f})" for march in marches), flush=True)


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
        peaks = {march: fma_peak(march, args.threads) for march in marches}
        print("FMA peak, GFLOP/s on", args.threads, "threads:", peaks, flush=True)
        with tempfile.TemporaryDirectory() as folder:
            for label, (c, groups, size) in LAYERS.items():
                flops = 2.0 * c * (c // groups) * 9 * size * size
                measure(label, layer_onnx(c, groups, size, Path(folder)), marches, args.threads, args.budget, flops,
                        peaks)
    for path in args.models:
        measure(Path(path).stem, Path(path), marches, args.threads, args.budget * 3)


if __name__ == "__main__":
    main()
