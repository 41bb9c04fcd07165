"""The `convc` command line: compile, summary, run, convert, check, bench, graph, cache."""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import runtime

from .debug import ATOL, RTOL  # one tolerance for `check` and `check --layers`
from .errors import ConvcError, ConvcWarning


def _forced_kernels(specs: list[str] | None) -> dict[str, str] | None:
    """--kernel LAYER=KERNEL (repeatable) -> {layer: kernel}."""
    if not specs:
        return None
    out = {}
    for spec in specs:
        layer, sep, kernel = spec.partition("=")
        if not sep or not layer or not kernel:
            raise ConvcError(f"--kernel {spec!r}: expected LAYER=KERNEL, e.g. conv3=direct (or *=winograd)")
        out[layer] = kernel
    return out


def _compile_kwargs(args) -> dict:
    kw = {"opt_level": args.opt_level, "march": None if args.march == "none" else args.march,
          "cflags": tuple(args.cflag or ()), "sanitize": args.sanitize, "progress": _progress(args),
          "kernels": _forced_kernels(args.kernel)}
    if getattr(args, "threads", None) is not None:
        kw["threads"] = args.threads
    if args.cache_dir:
        kw["cache_dir"] = args.cache_dir
    if args.cc:
        kw["cc"] = args.cc
    return kw


def _progress(args):
    from .progress import terminal_progress
    return terminal_progress(quiet=getattr(args, "quiet", False))


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return int(text)


def _add_build_options(p: argparse.ArgumentParser) -> None:
    from .pipeline import DEFAULT_OPT_LEVEL
    p.add_argument("--opt-level", type=int, default=DEFAULT_OPT_LEVEL,
                   help=f"0: plain loops; 1: + graph passes (fold batchnorm, fuse epilogues); "
                        f"2: + fast kernels (default {DEFAULT_OPT_LEVEL})")
    p.add_argument("--march", default="native",
                   help="the target: -march for cc, and the vector width and registers the kernels are tuned for "
                        '(default native: this machine; e.g. x86-64-v3 for AVX2, x86-64-v4 for AVX-512; "none" to omit)')
    p.add_argument("--kernel", action="append", metavar="LAYER=KERNEL",
                   help="force a layer's kernel (repeatable; * for every layer it can take), e.g. conv3=direct; "
                        "`convc summary MODEL --kernels` lists the choices")
    p.add_argument("--cflag", action="append", help="extra C compiler flag (repeatable)")
    p.add_argument("--cc", help="C compiler (default $CC, else cc)")
    p.add_argument("--cache-dir", help="compiled-library cache (default $CONVC_CACHE_DIR, else ~/.cache/convc)")
    p.add_argument("--sanitize", action="store_true", help="build with AddressSanitizer and UBSan")
    p.add_argument("--threads", type=_positive_int, metavar="N",
                   help="threads for the parallel kernels (default $OMP_NUM_THREADS, else all CPUs)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines on stderr (shown only on a terminal)")


def cmd_compile(args) -> int:
    import compiler
    kw = _compile_kwargs(args)  # one progress reporter for loading and compiling
    graph = compiler.load(args.model, progress=kw["progress"])
    if args.emit_c:
        from .emit import emit_c
        emitted = emit_c(graph, args.emit_c, weights=args.weights, opt_level=args.opt_level, prefix=args.prefix,
                         march=kw["march"])
        print(f"wrote the standalone C library of {graph.name} to {emitted.directory} (API {emitted.prefix}_run, "
              f"weights: {emitted.weights}); build the example with: make -C {emitted.directory / 'example'}")
        if not args.output:
            return 0
    start = time.perf_counter()
    out = Path(args.output) if args.output else Path(Path(args.model).stem + ".so")
    from runtime.cpu import missing_isa
    target = compiler.Target.from_march(kw["march"], kw.get("cc"))
    lacks = missing_isa(target.features)
    if lacks:  # a library for a bigger machine: built and written, not loaded here
        kw.pop("threads", None)
        compiler.build(graph, out, **kw)
        print(f"compiled {graph.name} -> {out} in {time.perf_counter() - start:.2f} s, for {target.name}; this "
              f"machine lacks {', '.join(lacks[:3])}{' ...' if len(lacks) > 3 else ''} and cannot run it")
        return 0
    model = compiler.compile(graph, **kw)
    model.save(out)
    info = model.build_info
    print(f"compiled {graph.name} -> {out} ({'cache hit' if info.cache_hit else 'built'} in "
          f"{time.perf_counter() - start:.2f} s)")
    return 0


def cmd_summary(args) -> int:
    import compiler
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvcWarning)  # the summary lists them itself
        graph = compiler.load(args.model)
    if args.kernels:
        plan = compiler.plan_kernels(graph, opt_level=args.opt_level, march=None if args.march == "none" else args.march,
                                     kernels=_forced_kernels(args.kernel))
        print(plan.to_json() if args.json else plan)
        return 0
    summary = graph.summary()
    print(summary.to_json() if args.json else summary)
    return 0


def _open_model(path: str, args):
    """A .so opens with the runtime alone; a description is compiled first."""
    if Path(path).suffix == ".so":
        return runtime.load(path, threads=getattr(args, "threads", None))
    import compiler
    return compiler.compile(path, **_compile_kwargs(args))


def _read_input(path: str) -> np.ndarray:
    try:
        x = np.load(path, allow_pickle=False)
    except Exception as e:
        raise ConvcError(f"{path}: cannot read the input array: {type(e).__name__}: {e}") from None
    if not isinstance(x, np.ndarray):
        raise ConvcError(f"{path}: expected a .npy array, got an archive")
    if x.dtype.kind not in "fiu":
        raise ConvcError(f"{path}: expected numbers, got dtype {x.dtype}")
    return np.ascontiguousarray(x, dtype=np.float32)


def cmd_run(args) -> int:
    model = _open_model(args.model, args)
    if args.input:
        x = _read_input(args.input)
    else:
        shape = model.input_shapes[model.input_names[0]]
        x = np.random.default_rng(args.seed).standard_normal((args.random, *shape)).astype(np.float32)
    want = model.input_shapes[model.input_names[0]]
    if x.shape == want:  # one sample without its batch axis
        x = x[None]
    y = model(x)
    if isinstance(y, tuple):
        if not args.output:
            raise ConvcError("the model has several outputs: give -o OUT.npz")
        np.savez(args.output, **dict(zip(model.output_names, y)))
    elif args.output:
        np.save(args.output, y)
    else:
        np.set_printoptions(precision=5, suppress=True, linewidth=120)
        print(y)
    if args.output:
        print(f"wrote {args.output}")
    return 0


def cmd_check_layers(args) -> int:
    from .debug import check_layers
    kw = _compile_kwargs(args)
    report = check_layers(args.model, batch=args.batch, seed=args.seed, opt_level=kw["opt_level"], march=kw["march"],
                          cflags=kw["cflags"], cc=kw.get("cc"), cache_dir=kw.get("cache_dir"), kernels=kw["kernels"])
    print(report.format(color=sys.stdout.isatty()))
    return 0 if report.ok else 1


def cmd_graph(args) -> int:
    import compiler
    from .draw import draw
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvcWarning)  # a picture, not a diagnosis
        graph = compiler.load(args.model)
    out = draw(graph, args.output or Path(args.model).stem + ".svg")
    print(f"wrote {out}")
    return 0


def cmd_check(args) -> int:
    import compiler
    if args.layers:
        return cmd_check_layers(args)
    graph = compiler.load(args.model)
    start = time.perf_counter()
    model = compiler.compile(graph, **_compile_kwargs(args))
    seconds = time.perf_counter() - start
    rng = np.random.default_rng(args.seed)
    x = rng.standard_normal((args.batch, *graph.shape(graph.inputs[0]))).astype(np.float32)
    got = model.run({graph.inputs[0]: x})
    ref = compiler.interpret(graph, {graph.inputs[0]: x}, dtype=np.float64)
    if args.output:
        model.save(args.output)
    print(f"model {graph.name}: compiled in {seconds:.2f} s "
          f"({'cache hit' if model.build_info.cache_hit else 'built'}), batch {args.batch}")
    ok = True
    for name in graph.outputs:
        err = np.abs(got[name].astype(np.float64) - ref[name])
        rel = err / np.maximum(np.abs(ref[name]), 1e-30)
        fine = bool(np.all(err <= ATOL + RTOL * np.abs(ref[name])))
        ok &= fine
        print(f"  output {name}: max abs error {err.max():.3g}, max rel error {rel.max():.3g} "
              f"(tolerance {RTOL:g} rel + {ATOL:g} abs): {'OK' if fine else 'MISMATCH'}")
    print("check passed" if ok else "check FAILED: the compiled model disagrees with the interpreter")
    return 0 if ok else 1


def cmd_convert(args) -> int:
    import yaml

    import compiler
    from .frontends.description import to_description
    graph = compiler.load(args.model)
    out = Path(args.output) if args.output else Path(Path(args.model).stem + ".yaml")
    weights = out.with_suffix(".npz")
    description = to_description(graph, weights.name)
    try:
        np.savez(weights, **graph.weights)
        out.write_text(yaml.safe_dump(description, sort_keys=False, allow_unicode=True, default_flow_style=None, width=120), encoding="utf-8")
    except OSError as e:
        raise ConvcError(f"cannot write {out} / {weights}: {e}") from None
    print(f"wrote {out} and {weights} ({len(graph.layers()) - 1} layers, {len(graph.weights)} weight arrays)")
    return 0


def _ort_session(path: str, threads: int):
    """onnxruntime on the same ONNX file with `threads` threads (None when it is not installed)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def cmd_bench(args) -> int:
    """Latency of the compiled model on random inputs, interleaved with onnxruntime's on the same ONNX file."""
    import compiler
    from runtime.timing import interleaved
    graph = compiler.load(args.model)
    target = compiler.Target.from_march(None if args.march == "none" else args.march)
    threads = args.threads or compiler.Target.from_march("native").threads or 1  # it runs here
    args.threads = threads
    start = time.perf_counter()
    model = compiler.compile(graph, **_compile_kwargs(args))
    seconds = time.perf_counter() - start
    lead = (args.batch,) if graph.batched else ()  # a whole-tensor model takes exactly its shapes
    rng = np.random.default_rng(args.seed)
    feeds = {name: rng.standard_normal((*lead, *graph.shape(name))).astype(np.float32) for name in graph.inputs}
    calls = {"convc": lambda: model.run(feeds)}
    print(f"host: {compiler.Target.from_march('native').describe()}")
    print(f"model {graph.name}: compiled for {target.name} ({target.lanes} lanes) at opt level {args.opt_level} in "
          f"{seconds:.2f} s ({'cache hit' if model.build_info.cache_hit else 'built'}); "
          f"{'batch ' + str(args.batch) if graph.batched else 'whole-tensor inputs ' + str(list(lead))}, "
          f"{threads} thread(s)")
    session = _ort_session(args.model, threads) if Path(args.model).suffix.lower() == ".onnx" else None
    if session is not None:
        ours, theirs = model.run(feeds), session.run(None, feeds)
        for name, ref in zip(graph.outputs, theirs):
            err = float(np.abs(ours[name].astype(np.float64) - ref).max() / max(float(np.abs(ref).max()), 1e-30))
            print(f"  output {name}: max |convc − onnxruntime| / max |onnxruntime| = {err:.2g}")
        calls["onnxruntime"] = lambda: session.run(None, feeds)
    elif Path(args.model).suffix.lower() == ".onnx":
        print("  onnxruntime is not installed: timing convc alone (pip install onnxruntime to compare)")
    times = interleaved(calls, warmup=3, budget_s=args.budget)
    for engine, t in times.items():
        print(f"  {engine:12s} median {t.median * 1e3:9.3f} ms (min {t.low * 1e3:.3f}, max {t.high * 1e3:.3f}; "
              f"{t.runs} runs)")
    if "onnxruntime" in times:
        print(f"  convc/onnxruntime = {times['convc'].median / times['onnxruntime'].median:.2f} (< 1: convc is faster)")
    return 0


def _megabytes(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def cmd_cache(args) -> int:
    from runtime import cache
    from runtime.build import default_cache_dir
    folder = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    if args.action == "clear":
        removed = cache.clear(folder)
        print(f"removed {len(removed)} libraries ({_megabytes(sum(e.bytes for e in removed))}) from {folder}")
    elif args.action == "prune":
        removed = cache.prune(folder, args.max_size)
        print(f"evicted {len(removed)} least recently used libraries ({_megabytes(sum(e.bytes for e in removed))}) "
              f"from {folder}")
    state = cache.usage(folder, args.max_size)
    print(f"{folder}: {len(state.entries)} libraries, {_megabytes(state.total_bytes)} of "
          f"{_megabytes(state.max_bytes)} (${cache.MAX_BYTES_VARIABLE} or --max-size sets the cap)")
    if args.action == "info" and state.entries:
        newest, oldest = state.entries[-1], state.entries[0]
        print(f"  last used: newest {time.strftime('%Y-%m-%d %H:%M', time.localtime(newest.last_used))}, "
              f"oldest {time.strftime('%Y-%m-%d %H:%M', time.localtime(oldest.last_used))}")
    return 0


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="convc", description="Compile CNN descriptions to native code.")
    parser.add_argument("--version", action="version", version=f"convc {runtime.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compile", help="compile MODEL to a shared library")
    p.add_argument("model")
    p.add_argument("-o", "--output", help="the .so to write (default: MODEL's stem + .so; none with --emit-c)")
    p.add_argument("--emit-c", metavar="DIR", help="write a standalone C99 library (model.c, model.h, example/) to DIR")
    p.add_argument("--weights", choices=("auto", "array", "file"), default="auto",
                   help="--emit-c weights: a const array in model.c, or weights.bin + a loader (auto: by size)")
    p.add_argument("--prefix", help="--emit-c: C name prefix of the API (default: the model's name)")
    _add_build_options(p)
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("summary", help="per-layer shapes, parameters, MACs, receptive fields (or kernels)")
    p.add_argument("model")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--kernels", action="store_true",
                   help="instead: each layer of the optimized model, the kernel it gets for --march and why")
    from .pipeline import DEFAULT_OPT_LEVEL
    p.add_argument("--opt-level", type=int, default=DEFAULT_OPT_LEVEL, help="with --kernels: the opt level")
    p.add_argument("--march", default="native", help="with --kernels: the target (as for compile)")
    p.add_argument("--kernel", action="append", metavar="LAYER=KERNEL", help="with --kernels: force a kernel")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("run", help="run a model (description or .so) on an input .npy")
    p.add_argument("model")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", "-i", help="a .npy of shape [N, ...] or one sample")
    source.add_argument("--random", type=int, metavar="N", help="run on N random samples instead")
    p.add_argument("--seed", type=int, default=0, help="seed for --random")
    p.add_argument("-o", "--output", help="write the output .npy (default: print it)")
    _add_build_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("convert", help="convert an ONNX model to a native description (.yaml) plus an .npz of weights")
    p.add_argument("model")
    p.add_argument("-o", "--output", help="the .yaml to write (default: MODEL's stem + .yaml); weights go next to it")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("check", help="compile, run on a random batch and compare with the interpreter")
    p.add_argument("model")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", help="also save the compiled .so here")
    p.add_argument("--layers", action="store_true",
                   help="compare every layer's tensor (debug build) and name the first that diverges")
    _add_build_options(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("bench", help="time the compiled model (and onnxruntime on the same ONNX file) on this machine")
    p.add_argument("model")
    p.add_argument("--batch", type=_positive_int, default=1, help="samples per call (default 1)")
    p.add_argument("--budget", type=float, default=3.0, help="seconds of timed rounds (default 3)")
    p.add_argument("--seed", type=int, default=0)
    _add_build_options(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("graph", help="draw the network (.svg, .html, or .dot)")
    p.add_argument("model")
    p.add_argument("-o", "--output", help="the picture: .svg, .html or .dot/.gv (default: MODEL's stem + .svg)")
    p.set_defaults(func=cmd_graph)

    p = sub.add_parser("cache", help="show, prune or clear the compiled-library cache")
    p.add_argument("action", choices=("info", "prune", "clear"),
                   help="info: size and entries; prune: evict least recently used libraries down to the cap; "
                        "clear: remove every library no process is building or opening")
    p.add_argument("--max-size", metavar="SIZE",
                   help="the cap, e.g. 500M or 2G (default $CONVC_CACHE_MAX_BYTES, else 2G)")
    p.add_argument("--cache-dir", help="the cache (default $CONVC_CACHE_DIR, else ~/.cache/convc)")
    p.set_defaults(func=cmd_cache)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("always", ConvcWarning)
        warnings.showwarning = _show_warning  # restored when the block ends
        try:
            return args.func(args)
        except (ConvcError, ValueError) as e:
            print(f"convc: error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 130


if __name__ == "__main__":
    sys.exit(main())
