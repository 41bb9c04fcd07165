"""For each bundled example: cold and cached compile time, and max error against the interpreter.

    python scripts/measure_examples.py [--opt-level N]
"""
import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import compiler  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--opt-level", type=int, default=None)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()
    kw = {} if args.opt_level is None else {"opt_level": args.opt_level}
    warnings.simplefilter("ignore", compiler.ConvcWarning)
    print(f"{'example':<14} {'cold compile':>12} {'cached':>9} {'max abs err':>12} {'max rel err':>12}")
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        graph = compiler.load(path)
        with tempfile.TemporaryDirectory() as cache:
            t0 = time.perf_counter()
            compiler.compile(graph, cache_dir=cache, **kw)
            cold = time.perf_counter() - t0
            t0 = time.perf_counter()
            model = compiler.compile(graph, cache_dir=cache, **kw)
            cached = time.perf_counter() - t0
            assert model.build_info.cache_hit
        x = np.random.default_rng(0).standard_normal((args.batch, *graph.shape(graph.inputs[0]))).astype(np.float32)
        got = model.run({graph.inputs[0]: x})
        ref = compiler.interpret(graph, {graph.inputs[0]: x}, dtype=np.float64)
        err = max(float(np.abs(got[n] - ref[n]).max()) for n in graph.outputs)
        rel = max(float((np.abs(got[n] - ref[n]) / np.maximum(np.abs(ref[n]), 1e-6)).max()) for n in graph.outputs)
        print(f"{path.stem:<14} {cold:>10.2f} s {cached * 1000:>6.1f} ms {err:>12.3g} {rel:>12.3g}")


if __name__ == "__main__":
    main()
