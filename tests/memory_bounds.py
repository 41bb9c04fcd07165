"""Measurements of a long-lived process (Linux /proc): RSS over many calls of one model, and what stays
behind when many distinct models are compiled, loaded, called and dropped.

Used by scripts/memory_bounds.py (the figures in docs/SECURITY.md) and tests/test_memory_bounds.py (smaller
counts, in CI). Both run in a fresh process, so nothing else the process did moves the numbers.
"""
from __future__ import annotations

import gc
import os
import tempfile
import time
from pathlib import Path

import numpy as np

import compiler
import runtime

ROOT = Path(__file__).resolve().parent.parent
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def process_state() -> dict:
    """RSS, mapped regions and files, open descriptors, threads and gc-tracked Python objects of this process."""
    regions, files = 0, set()
    with open("/proc/self/maps") as f:
        for line in f:
            regions += 1
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5].startswith("/"):
                files.add(parts[5].strip())
    with open("/proc/self/status") as f:
        threads = next(int(line.split()[1]) for line in f if line.startswith("Threads:"))
    return {"rss_bytes": rss_bytes(), "map_regions": regions, "mapped_files": len(files),
            "open_fds": len(os.listdir("/proc/self/fd")), "threads": threads, "python_objects": len(gc.get_objects())}


def repeated_calls(calls: int, model_path=ROOT / "examples" / "lenet5.yaml", warmup: int = 2000,
                   samples: int = 10) -> dict:
    """RSS before and after `calls` calls of one compiled model (batch 1), after a warm-up."""
    model = compiler.compile(model_path)
    x = np.random.default_rng(0).standard_normal((1, *model.input_shapes[model.input_names[0]])).astype(np.float32)
    for _ in range(warmup):
        model(x)
    gc.collect()
    before = rss_bytes()
    trace = []
    start = time.perf_counter()
    for i in range(calls):
        model(x)
        if (i + 1) % max(1, calls // samples) == 0:
            trace.append(rss_bytes())
    seconds = time.perf_counter() - start
    gc.collect()
    after = rss_bytes()
    return {"calls": calls, "rss_before": before, "rss_after": after, "rss_max": max(trace + [after]),
            "growth_fraction": (max(trace + [after]) - before) / before, "trace": trace,
            "microseconds_per_call": 1e6 * seconds / max(calls, 1)}


def repeated_loads(count: int) -> dict:
    """The process's state before and after loading (and calling) one saved library `count` more times."""
    folder = Path(tempfile.mkdtemp(prefix="convc-memory-"))
    path = compiler.compile(distinct_model(0), cache_dir=folder).save(folder / "m.so")
    x = np.zeros((1, 2, 8, 8), np.float32)
    for _ in range(50):
        runtime.load(path)(x)
    gc.collect()
    before = process_state()
    for _ in range(count):
        runtime.load(path)(x)
    gc.collect()
    after = process_state()
    return {"loads": count, "before": before, "after": after,
            "per_load": {k: (after[k] - before[k]) / max(count, 1) for k in before}}


def distinct_model(seed: int) -> dict:
    """A small model whose weights come from `seed`: a library of its own for every seed."""
    return {"name": f"m{seed}", "input": {"name": "x", "shape": [2, 8, 8]}, "seed": seed,
            "layers": [{"name": "c", "op": "conv2d", "filters": 4, "kernel": 3, "padding": 1}, {"op": "relu"},
                       {"op": "global_avgpool"}, {"op": "flatten"}, {"op": "dense", "units": 3}]}


def many_models(count: int, cache_dir: str | None = None, checkpoints: int = 5) -> dict:
    """Compile, load, call once and drop `count` distinct models; the process's state along the way."""
    cache_dir = cache_dir or tempfile.mkdtemp(prefix="convc-memory-")
    x = np.random.default_rng(0).standard_normal((1, 2, 8, 8)).astype(np.float32)
    model = compiler.compile(distinct_model(10**9), cache_dir=cache_dir)  # imports, caches and pools warmed up
    model(x)
    del model
    gc.collect()
    states = [{"models": 0, **process_state()}]
    start = time.perf_counter()
    for i in range(count):
        model = compiler.compile(distinct_model(i), cache_dir=cache_dir, opt_level=i % 3)
        model(x)
        del model
        if (i + 1) % max(1, count // checkpoints) == 0:
            gc.collect()
            states.append({"models": i + 1, **process_state()})
    first, last = states[0], states[-1]
    per_model = {k: (last[k] - first[k]) / max(count, 1) for k in first if k != "models"}
    return {"models": count, "seconds": time.perf_counter() - start, "states": states, "per_model": per_model,
            "library_bytes": sum(p.stat().st_size for p in Path(cache_dir).glob("*.so")) / max(count, 1)}
