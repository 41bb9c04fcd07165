"""Per-layer time and GFLOP/s of a convc model (a profiling build: each layer's call is timed in C), a bench
model or a torchvision zoo model; for a zoo model also onnxruntime's own per-node profile of the same file, so
that a slow cell can be traced to the layers where the two differ."""
from __future__ import annotations

import collections
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np

import compiler
from compiler.passes import optimize

from .models import MODELS


def _load(name: str, tmp: Path) -> tuple[compiler.Graph, Path | None]:
    """The model's graph, and for a zoo model the ONNX file it was loaded from."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", compiler.ConvcWarning)
        if name in MODELS:
            return compiler.load(MODELS[name]()), None
        from .torchvision_zoo import MODELS as ZOO, build, export
        if name not in ZOO:
            raise SystemExit(f"bench --profile: unknown model {name!r}; choose from {list(MODELS) + list(ZOO)}")
        path = tmp / f"{name}.onnx"
        export(build(name), path, "torchscript", ZOO[name].size)
        return compiler.load(path), path


def ort_profile(path: Path, x: np.ndarray, threads: int, runs: int, warmup: int = 3) -> list[tuple[str, str, float]]:
    """onnxruntime's mean time per node (name, op type, ms) from its own profiler, warm-up runs left out."""
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.profile_file_prefix = str(path.with_suffix(""))
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x}
    for _ in range(warmup + runs):
        session.run(None, feed)
    events = json.loads(Path(session.end_profiling()).read_text())
    run_ends = sorted(e["ts"] + e["dur"] for e in events if e.get("cat") == "Session" and e["name"] == "model_run")
    timed_from = run_ends[warmup - 1]
    nodes: dict[tuple[str, str], float] = collections.defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] > timed_from:
            nodes[(e["name"][:-len("_kernel_time")], e["args"].get("op_name", "?"))] += e["dur"] / 1e3 / runs
    return sorted(((n, op, ms) for (n, op), ms in nodes.items()), key=lambda r: -r[2])


def profile(name: str, batch: int = 1, threads: int | None = 2, runs: int = 20, opt_level: int = 2,
            march: str = "native", top: int = 40) -> str:
    with tempfile.TemporaryDirectory(prefix="convc-profile-") as tmp:
        graph, onnx_path = _load(name, Path(tmp))
        target = compiler.Target.from_march(march)
        model = compiler.compile(graph, opt_level=opt_level, threads=threads, profile=True, march=target)
        optimized = optimize(graph, opt_level)
        plan = compiler.plan_kernels(graph, opt_level=opt_level, march=target)
        # Which kernel each layer got, and "/cL" where its output is channel-blocked.
        kernels = {n: c.kernel + (f"/c{plan.layouts[n]}" if n in plan.layouts else "") for n, c in plan.choices.items()}
        x = np.random.default_rng(0).standard_normal((batch, *graph.shape(graph.inputs[0]))).astype(np.float32)
        for _ in range(3):
            model(x)
        model.profile(reset=True)
        for _ in range(runs):
            model(x)
        seconds = model.profile()
        total = sum(seconds.values())
        lines = [f"{name}: batch {batch}, {model.threads} thread(s), opt_level {opt_level}, target {target.name}, "
                 f"mean of {runs} runs: {total / runs * 1e3:.3f} ms in layers",
                 f"{'layer':<28} {'op':<15} {'kernel':<27} {'ms':>8} {'share':>6} {'MMACs':>9} {'GFLOP/s':>8}"]
        by_op: dict[str, float] = collections.defaultdict(float)
        for layer_name, s in sorted(seconds.items(), key=lambda kv: -kv[1]):
            layer = optimized.layer(layer_name)
            by_op[layer.op] += s / runs * 1e3
            macs = layer.spec.macs(layer, optimized.in_shapes(layer_name), optimized.shape(layer_name)) * batch
            per_call = s / runs
            rate = 2 * macs / per_call / 1e9 if per_call > 0 and macs else 0.0
            if len(lines) < top + 2:
                lines.append(f"{layer_name[-28:]:<28} {layer.op:<15} {kernels.get(layer_name, '-'):<27} "
                             f"{per_call * 1e3:8.3f} {100 * s / total:5.1f}% {macs / 1e6:9.2f} {rate:8.1f}")
        lines += ["", "convc ms by op: " + ", ".join(f"{op} {ms:.3f}" for op, ms in
                                                    sorted(by_op.items(), key=lambda kv: -kv[1]))]
        if onnx_path is not None:
            try:
                nodes = ort_profile(onnx_path, x, model.threads, runs)
            except ImportError:
                return "\n".join(lines + ["(onnxruntime is not installed: no node profile)"])
            ort_by_op: dict[str, float] = collections.defaultdict(float)
            for _, op, ms in nodes:
                ort_by_op[op] += ms
            lines += [f"onnxruntime ({model.threads} thread(s), its own profiler, mean of {runs} runs): "
                      f"{sum(ms for *_, ms in nodes):.3f} ms in nodes",
                      "onnxruntime ms by op: " + ", ".join(f"{op} {ms:.3f}" for op, ms in
                                                           sorted(ort_by_op.items(), key=lambda kv: -kv[1])),
                      f"{'onnxruntime node':<44} {'op':<22} {'ms':>8}"]
            lines += [f"{n[-44:]:<44} {op[:22]:<22} {ms:8.3f}" for n, op, ms in nodes[:top]]
    return "\n".join(lines)
