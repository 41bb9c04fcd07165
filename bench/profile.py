"""Per-layer time and GFLOP/s of a convc model (a profiling build: each layer's call is timed in C)."""
from __future__ import annotations

import warnings

import numpy as np

import compiler
from compiler.lower import lower
from compiler.memory import plan_memory
from compiler.passes import optimize

from .models import MODELS


def profile(name: str, batch: int = 1, threads: int | None = 2, runs: int = 20, opt_level: int = 2) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", compiler.ConvcWarning)
        graph = compiler.load(MODELS[name]())
    model = compiler.compile(graph, opt_level=opt_level, threads=threads, profile=True)
    optimized = optimize(graph, opt_level)
    # Which kernel each layer got (its template's name), and "/cL" where its output is channel-blocked.
    target = compiler.Target.from_march("native")
    lowered = lower(optimized, plan_memory(optimized, opt_level, target), opt_level, target=target)
    kernels = {k.layer: k.template.removeprefix("ops/").removesuffix(".c.j2")
               + (f"/c{lowered.layouts[k.layer]}" if k.layer in lowered.layouts else "")
               for k in lowered.kernels}
    x = np.random.default_rng(0).standard_normal((batch, *graph.shape(graph.inputs[0]))).astype(np.float32)
    for _ in range(3):
        model(x)
    model.profile(reset=True)
    for _ in range(runs):
        model(x)
    seconds = model.profile()
    total = sum(seconds.values())
    lines = [f"{name}: batch {batch}, {model.threads} thread(s), opt_level {opt_level}, mean of {runs} runs: "
             f"{total / runs * 1e3:.3f} ms in layers",
             f"{'layer':<28} {'op':<15} {'kernel':<27} {'ms':>8} {'share':>6} {'MMACs':>9} {'GFLOP/s':>8}"]
    for layer_name, s in sorted(seconds.items(), key=lambda kv: -kv[1]):
        layer = optimized.layer(layer_name)
        macs = layer.spec.macs(layer, optimized.in_shapes(layer_name), optimized.shape(layer_name)) * batch
        per_call = s / runs
        rate = 2 * macs / per_call / 1e9 if per_call > 0 and macs else 0.0
        lines.append(f"{layer_name[:28]:<28} {layer.op:<15} {kernels.get(layer_name, '-'):<27} "
                     f"{per_call * 1e3:8.3f} {100 * s / total:5.1f}% "
                     f"{macs / 1e6:9.2f} {rate:8.1f}")
    return "\n".join(lines)
