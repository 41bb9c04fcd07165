"""`python -m bench`: time convc, onnxruntime and PyTorch on the benchmark models and write docs/benchmarks.md."""
from __future__ import annotations

import argparse
import datetime
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import compiler
import runtime

from .export import onnx_model, torch_module
from .memory import peak_rss
from .models import MODELS
from .peak import fma_peak_gflops
from runtime.timing import Timing, interleaved

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"


@dataclass
class ModelFacts:
    name: str
    macs: int  # per sample
    compile_cold_s: float
    compile_cached_s: float  # compiler.compile() again: regenerates the C, then hits the library cache
    load_s: float  # runtime.load() of the saved library
    arena_bytes: int
    rss_mib: float
    # vs onnxruntime / torch on one batch: max |convc - theirs| / max |theirs| (random weights can make outputs
    # huge: Inception v3's reach about 1e13, so absolute differences say nothing)
    max_error: dict[str, float] = field(default_factory=dict)


@dataclass
class Row:
    model: str
    batch: int
    threads: int
    times: dict[str, Timing]


def machine() -> str:
    """The host as convc's native Target sees it (ISA, lanes, caches), the C compiler and the OS."""
    target = compiler.Target.from_march("native")
    cc = subprocess.run(["cc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    return f"{target.describe()}; {platform.system()} {platform.release()}; {cc}"


def versions() -> str:
    parts = [f"convc {runtime.__version__}", f"Python {platform.python_version()}", f"NumPy {np.__version__}"]
    for mod in ("onnxruntime", "torch"):
        try:
            parts.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            parts.append(f"{mod} not installed")
    return ", ".join(parts)


def relative_error(ours: np.ndarray, theirs: np.ndarray) -> float:
    """max |ours - theirs| / max |theirs|: the README's agreement measure."""
    return float(np.abs(ours - theirs).max() / max(float(np.abs(theirs).max()), np.finfo(np.float32).tiny))


def ort_session(model_bytes: bytes, threads: int):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


def bench_model(name: str, batches: list[int], threads_list: list[int], budget_s: float, opt_level: int,
                engines: list[str], pause_s: float = 0.005, march: str = "native") -> tuple[ModelFacts, list[Row]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", compiler.ConvcWarning)
        graph = compiler.load(MODELS[name]())
    net = torch_module(graph) if "torch" in engines else None
    onnx_bytes = onnx_model(graph).SerializeToString() if "onnxruntime" in engines else None
    return bench_engines(name, graph, net, onnx_bytes, batches, threads_list, budget_s, opt_level, pause_s, march)


def bench_engines(name: str, graph, net, onnx_bytes: bytes | None, batches: list[int], threads_list: list[int],
                  budget_s: float, opt_level: int, pause_s: float, march: str) -> tuple[ModelFacts, list[Row]]:
    """Compile `graph` (cold, then cached, then loaded), check that convc, onnxruntime (`onnx_bytes`, the same
    model) and PyTorch (`net`, an eager module) agree on one batch, then time them interleaved."""
    with tempfile.TemporaryDirectory(prefix="convc-bench-") as cache:
        start = time.perf_counter()
        compiler.compile(graph, opt_level=opt_level, cache_dir=cache, march=march)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        model = compiler.compile(graph, opt_level=opt_level, cache_dir=cache, march=march)
        cached = time.perf_counter() - start
        library = Path(cache) / "model.so"
        model.save(library)
        start = time.perf_counter()
        runtime.load(library)
        load = time.perf_counter() - start
        rss = peak_rss(library, max(batches))
    facts = ModelFacts(name, graph.summary().macs, cold, cached, load, model.arena_floats * 4,
                       rss["peak_kib"] / 1024)

    x_in = graph.inputs[0]
    rng = np.random.default_rng(0)
    xs = {b: rng.standard_normal((b, *graph.shape(x_in))).astype(np.float32) for b in batches}
    torch = None
    if net is not None:
        import torch
    sessions = {t: ort_session(onnx_bytes, t) for t in threads_list} if onnx_bytes else {}

    # The engines agree on the output (a benchmark of wrong answers is worthless).
    x = xs[max(batches)]
    ours = model(x)
    if sessions:
        facts.max_error["onnxruntime"] = relative_error(ours, sessions[threads_list[0]].run(None, {x_in: x})[0])
    if torch is not None:
        with torch.inference_mode():
            facts.max_error["torch"] = relative_error(ours, net(torch.from_numpy(x)).numpy())

    rows = []
    for threads in threads_list:
        model.set_threads(threads)
        if torch is not None:
            torch.set_num_threads(threads)
        for batch in batches:
            x = xs[batch]
            calls = {"convc": lambda x=x: model(x)}
            if sessions:
                calls["onnxruntime"] = lambda x=x, s=sessions[threads]: s.run(None, {x_in: x})
            if torch is not None:
                tx = torch.from_numpy(x)

                def run_torch(tx=tx):
                    with torch.inference_mode():
                        return net(tx)
                calls["torch"] = run_torch
            rows.append(Row(name, batch, threads, interleaved(calls, warmup=3, budget_s=budget_s, pause_s=pause_s)))
            print(format_row(rows[-1], facts, None), flush=True)
    return facts, rows


def gflops(facts: ModelFacts, row: Row, engine: str = "convc") -> float:
    return 2.0 * facts.macs * row.batch / row.times[engine].median / 1e9


def format_row(row: Row, facts: ModelFacts, peaks: dict[int, float] | None) -> str:
    t = row.times
    cells = [facts.name, str(row.batch), str(row.threads)]
    for engine in ("convc", "onnxruntime", "torch"):
        cells.append(f"{t[engine].median * 1e3:.3f} ({t[engine].low * 1e3:.3f}–{t[engine].high * 1e3:.3f})"
                     if engine in t else "–")
    cells.append(f"{gflops(facts, row):.1f}")
    cells.append(f"{100 * gflops(facts, row) / peaks[row.threads]:.0f}%" if peaks else "")
    for engine in ("onnxruntime", "torch"):
        cells.append(f"{t['convc'].median / t[engine].median:.2f}" if engine in t else "–")
    return "| " + " | ".join(cells) + " |"


def section_title(target) -> str:
    """The heading of one machine's table: the host's ISA and the ISA convc built for (an AVX-512 host can
    time the AVX2 build through the Target)."""
    host = compiler.Target.from_march("native")
    return f"## {host.isa.upper()} host ({host.microarchitecture or host.arch}), convc built for {target.isa.upper()} ({target.name})"


def zoo_title(args) -> str:
    """A zoo table's heading also names its batch sizes: a run per batch size keeps a section of its own."""
    if not args.zoo:
        return ""
    batches = [b.strip() for b in args.batches.split(",")]
    return f" — torchvision zoo, batch{'es' if len(batches) > 1 else ''} {', '.join(batches)}"


def merge_sections(old: str, section: str) -> str:
    """docs/benchmarks.md keeps one section per (host ISA, build): this run's replaces its own."""
    title = section.splitlines()[0]
    header, *parts = old.split("\n## ") if old.startswith("# Benchmarks") else ("# Benchmarks\n", )
    kept = ["## " + p.rstrip("\n") + "\n" for p in parts if ("## " + p).splitlines()[0] != title]
    return "\n".join([header.rstrip("\n") + "\n", *sorted(kept + [section])])


def report(facts: list[ModelFacts], rows: list[Row], peaks: dict[int, float], args, seconds: float) -> str:
    by_name = {f.name: f for f in facts}
    target = compiler.Target.from_march(args.march)
    lines = [
        section_title(target) + zoo_title(args), "",
        "Generated by `python -m bench" + (" " + " ".join(args.argv) if args.argv else "") + "` on "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC in {seconds / 60:.1f} min.", "",
        f"- Machine: {machine()}",
        f"- convc's target: {target.describe()}",
        f"- Software: {versions()}",
        f"- {target.isa.upper()} FMA peak (float32, register-only FMA loop in C on {target.lanes}-lane vectors, "
        "measured by this run): "
        + ", ".join(f"{t} thread{'s' if t > 1 else ''}: {p:.1f} GFLOP/s" for t, p in sorted(peaks.items())),
        f"- convc opt_level {args.opt_level}; onnxruntime with all graph optimizations, sequential executor; "
        "PyTorch eager under inference_mode. The engines run interleaved on the same input after warm-up: "
        f"in every round each engine (order rotating) idles {args.pause_ms:g} ms, longer than any engine's "
        "thread pool spins after work, so none is timed against another's spinning threads; then one "
        "untimed call and a block of about 50 ms of timed back-to-back calls (steady-state latency).",
        "",
        "Timings from a shared or busy machine are noisy: compare the engines within a row (they ran "
        "interleaved), and look at the medians. Per-layer times: `python -m bench --profile MODEL`.", "",
        "Latency in ms: median (min–max) over the rounds. GFLOP/s and % of peak are convc's, with "
        "2 FLOP per MAC of the direct convolution and the peak for the same thread count. They are "
        "effective rates: convc's Winograd layers (3×3, stride 1) do 2.25× fewer multiply-adds, so a model "
        "using them can pass 100% of the FMA peak. Ratios are convc's median over the other "
        "engine's median (< 1: convc is faster).", "",
        "| model | batch | threads | convc ms | onnxruntime ms | PyTorch ms | convc GFLOP/s | % FMA peak | "
        "convc/ORT | convc/PyTorch |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [format_row(r, by_name[r.model], peaks) for r in rows]
    lines += ["", "| model | MMACs per sample | cold compile s | cached compile s | runtime.load s | arena bytes per sample | "
              "peak RSS MiB (load + run) | max rel. diff vs ORT / PyTorch |", "|---|---|---|---|---|---|---|---|"]
    for f in facts:
        diffs = " / ".join(f"{f.max_error[e]:.2g}" if e in f.max_error else "–" for e in ("onnxruntime", "torch"))
        lines.append(f"| {f.name} | {f.macs / 1e6:.1f} | {f.compile_cold_s:.2f} | {f.compile_cached_s:.2f} | "
                     f"{f.load_s:.4f} | "
                     f"{f.arena_bytes:,} | {f.rss_mib:.1f} | {diffs} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {', '.join(MODELS)}")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--budget", type=float, help="seconds of timed rounds per (model, batch, threads); "
                   "default 6, 1.5 with --quick")
    p.add_argument("--quick", action="store_true", help="batch 1, 2 threads, 1.5 s per configuration")
    p.add_argument("--opt-level", type=int, default=2)
    p.add_argument("--march", default="native", help="convc's target (e.g. x86-64-v3: the AVX2 build on an AVX-512 "
                   "host); the FMA peak is measured for the same ISA")
    p.add_argument("--pause-ms", type=float, default=25.0,
                   help="idle time before each engine's block of calls (longer than thread pools spin)")
    p.add_argument("--engines", default="onnxruntime,torch", help="engines besides convc (missing ones skipped)")
    p.add_argument("--output", default=str(DOC), help="where to write the markdown table ('-': nowhere)")
    p.add_argument("--zoo", nargs="?", const="all", metavar="MODELS",
                   help="instead of the bench models: torchvision's CNNs (random weights, exported by torch.onnx), "
                        "all or a comma-separated subset; needs torchvision (see README, Testing)")
    p.add_argument("--profile", metavar="MODEL", help="instead: per-layer time and GFLOP/s of MODEL, a bench or "
                   "zoo model (first of --batches and last of --threads; for a zoo model also onnxruntime's "
                   "per-node profile)")
    args = p.parse_args(argv)
    args.argv = argv
    if args.profile:
        from .profile import profile
        print(profile(args.profile, int(args.batches.split(",")[0]), int(args.threads.split(",")[-1]),
                      opt_level=args.opt_level, march=args.march))
        return 0
    if args.quick:
        args.batches, args.threads = "1", "2"
    if args.budget is None:
        args.budget = 1.5 if args.quick else 6.0
    engines = []
    for e in filter(None, args.engines.split(",")):
        try:
            __import__(e)
            engines.append(e)
        except ImportError:
            print(f"bench: {e} is not installed; skipping it (pip install '.[bench]')", file=sys.stderr)
    if args.zoo:
        from .zoo import ZOO, bench_zoo_model
        names = list(ZOO) if args.zoo == "all" else [n.strip() for n in args.zoo.split(",") if n.strip()]
        known = ZOO
    else:
        names = [n.strip() for n in args.models.split(",") if n.strip()]
        known = MODELS
    unknown = [n for n in names if n not in known]
    if unknown:
        p.error(f"unknown model(s) {unknown}; choose from {list(known)}")
    batches = [int(b) for b in args.batches.split(",")]
    threads = [int(t) for t in args.threads.split(",")]

    start = time.perf_counter()
    peaks = {t: fma_peak_gflops(t, compiler.Target.from_march(args.march)) for t in threads}
    print("FMA peak GFLOP/s:", peaks, flush=True)
    facts, rows = [], []
    for name in names:
        run = bench_zoo_model if args.zoo else bench_model
        f, r = run(name, batches, threads, args.budget, args.opt_level, engines, args.pause_ms / 1e3, args.march)
        facts.append(f)
        rows += r
    text = report(facts, rows, peaks, args, time.perf_counter() - start)
    print(text)
    if args.output != "-":
        out = Path(args.output)
        out.write_text(merge_sections(out.read_text() if out.exists() else "", text))
        print(f"wrote {args.output}")
    return 0
