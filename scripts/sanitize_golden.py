"""Every golden case (tests/test_golden_ops.py), built with AddressSanitizer + UBSan, vs the interpreter.

The sanitizer runtimes must be loaded before Python starts, so run it through `--preload`-style
environment, e.g. (what tests/test_sanitizers.py does):

    LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)" \\
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \\
    python scripts/sanitize_golden.py [--cache-dir DIR] [--opt-level N ...] [CASE_ID ...]

Any out-of-bounds access or undefined behaviour in a kernel aborts the process with a report on
stderr; a wrong result raises. By default every case is built at opt level 0 (plain loops), the default
level and the highest one. Prints one line per build and "sanitized N builds (...), 0 mismatches".
"""
from __future__ import annotations

import argparse
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import numpy as np  # noqa: E402

import compiler  # noqa: E402
from compiler.passes import PIPELINES  # noqa: E402
from compiler.pipeline import DEFAULT_OPT_LEVEL  # noqa: E402
from conftest import assert_close  # noqa: E402
from test_golden_ops import CASES  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cases", nargs="*", help="case ids (default: all)")
    p.add_argument("--cache-dir", help="compiled-library cache")
    p.add_argument("--opt-level", type=int, action="append",
                   help="optimization level (repeatable; default: the default level and the highest)")
    p.add_argument("--jobs", type=int, default=2, help="parallel C compiles (default 2)")
    args = p.parse_args(argv)
    cases = [c for c in CASES if not args.cases or c.id in args.cases]
    unknown = set(args.cases) - {c.id for c in cases}
    if unknown:
        p.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    levels = args.opt_level or sorted({0, DEFAULT_OPT_LEVEL, max(PIPELINES)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", compiler.ConvcWarning)
        graphs = [compiler.load(c.description()) for c in cases]
    jobs = [(case, graph, level) for level in levels for case, graph in zip(cases, graphs)]
    with ThreadPoolExecutor(args.jobs) as pool:  # builds run cc in subprocesses: threads overlap them
        models = list(pool.map(lambda job: compiler.compile(job[1], sanitize=True, opt_level=job[2],
                                                            cache_dir=args.cache_dir), jobs))
    for (case, graph, level), model in zip(jobs, models):
        x = case.input()
        got = model.run({graph.inputs[0]: x})
        ref = compiler.interpret(graph, {graph.inputs[0]: x}, dtype=np.float64)
        for name in graph.outputs:
            assert_close(got[name], ref[name])
        print(f"ok {case.id} O{level}", flush=True)
    print(f"sanitized {len(jobs)} builds ({len(cases)} cases at opt levels {levels}), 0 mismatches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
