"""ONNX conformance figures for docs/onnx.md: backend tests passed / run per op family, the excluded ones,
each light model's max error, compile time and run time, the same models with random weights vs onnxruntime,
and the PyTorch round-trip errors.

    python scripts/onnx_conformance.py [--skip-backend] [--skip-light] [--skip-random] [--skip-roundtrip]
                                       [--markdown]

Compile times are cold: libraries are built into a fresh temporary cache unless --cache-dir is given.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
import unittest
import warnings
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def family_of(test_name: str, families: dict[str, str]) -> str:
    for family, pattern in families.items():
        if re.match(pattern, test_name):
            return family
    return "?"


def backend_figures(markdown: bool) -> None:
    import test_onnx_backend as suite_module

    suite = unittest.TestSuite()
    for case in suite_module._cases.values():
        suite.addTests(unittest.TestLoader().loadTestsFromTestCase(case))
    names = [t.id().rsplit(".", 1)[-1] for t in _iterate(suite)]  # the run empties the suite
    with open(os.devnull, "w") as sink:
        result = unittest.TextTestRunner(stream=sink, verbosity=0).run(suite)
    failed = {t.id().rsplit(".", 1)[-1] for t, _ in result.failures + result.errors}
    skipped = {t.id().rsplit(".", 1)[-1] for t, _ in result.skipped}
    run, passed, excluded = Counter(), Counter(), Counter()
    for name in names:
        family = family_of(name, suite_module.FAMILIES)
        if name in skipped:
            excluded[family] += 1
            continue
        run[family] += 1
        passed[family] += name not in failed
    families = list(suite_module.FAMILIES)
    if markdown:
        print("| op family | passed / run | excluded |\n|---|---|---|")
        for f in families:
            print(f"| {f} | {passed[f]} / {run[f]} | {excluded[f]} |")
        print(f"| **total** | **{sum(passed.values())} / {sum(run.values())}** | **{sum(excluded.values())}** |")
    else:
        print(f"{'family':20} {'passed/run':>11} {'excluded':>9}")
        for f in families:
            print(f"{f:20} {passed[f]:>5} / {run[f]:<4} {excluded[f]:>9}")
        print(f"{'total':20} {sum(passed.values()):>5} / {sum(run.values()):<4} {sum(excluded.values()):>9}")
    for name in sorted(failed):
        print(f"FAILED {name}")


def _iterate(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from _iterate(item)
        else:
            yield item


def light_figures(markdown: bool) -> None:
    import numpy as np
    import test_onnx_light_models as light

    if markdown:
        print("| model | layers | max abs error | reference max | compile (s) | run N=1 (s) |\n|---|---|---|---|---|---|")
    for name in light.MODELS:
        try:
            r = light.run_light_model(name)
        except Exception as e:  # report and go on: the table should show every model
            print(f"{name}: ERROR {type(e).__name__}: {e}")
            continue
        ok = np.allclose(r["got"], r["ref"], rtol=light.RTOL, atol=light.ATOL)
        cold = "" if not r["cache_hit"] else " (cache hit)"
        if markdown:
            print(f"| {name} | {r['layers']} | {r['max_abs_error']:.2g} | {float(np.abs(r['ref']).max()):.3g} | "
                  f"{r['compile_seconds']:.1f}{cold} | {r['run_seconds']:.1f} |")
        else:
            print(f"{name:14} {'OK ' if ok else 'BAD'} max abs error {r['max_abs_error']:.3g} "
                  f"(reference max {float(np.abs(r['ref']).max()):.3g}), compile {r['compile_seconds']:.1f} s{cold}, "
                  f"run {r['run_seconds']:.1f} s", flush=True)


def random_light_figures(markdown: bool) -> None:
    import test_onnx_light_random as random_light

    if markdown:
        print("| model | batches | max abs error | max \\|ref\\| | error / max | convc compile (s) | total (s) |\n"
              "|---|---|---|---|---|---|---|")
    for name in random_light.MODELS:
        batches = (1, 2) if name in random_light.SMALL else (1,)
        start = time.perf_counter()
        try:
            r = random_light.run_random_model(name, batches)
        except Exception as e:  # report and go on: the table should show every model
            print(f"{name}: ERROR {type(e).__name__}: {e}")
            continue
        total = time.perf_counter() - start
        e = random_light.errors(r)
        cold = "" if not r["cache_hit"] else " (cache hit)"
        shown = ", ".join(f"N={n}" for n in batches)
        if markdown:
            print(f"| {name} | {shown} | {e['max_abs_error']:.2g} | {e['ref_max']:.3g} | {e['relative_to_max']:.1g} | "
                  f"{r['compile_seconds']:.1f}{cold} | {total:.1f} |")
        else:
            print(f"{name:14} random weights ({shown}): max abs error {e['max_abs_error']:.3g} "
                  f"(max |ref| {e['ref_max']:.3g}, {e['relative_to_max']:.2g} of it), "
                  f"compile {r['compile_seconds']:.1f} s{cold}, total {total:.1f} s", flush=True)


def roundtrip_figures(markdown: bool) -> None:
    import test_torch_roundtrip as roundtrip

    if markdown:
        print("| model | N = 1 | N = 3 |\n|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in roundtrip.MODELS:
            errors = roundtrip.roundtrip_errors(name, Path(tmp))
            if markdown:
                print(f"| {name} | {errors[1]:.2g} | {errors[3]:.2g} |")
            else:
                print(f"{name:14} max abs error vs PyTorch: N=1 {errors[1]:.3g}, N=3 {errors[3]:.3g}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-light", action="store_true", help="only the backend node tests")
    parser.add_argument("--skip-backend", action="store_true", help="only the light models")
    parser.add_argument("--skip-random", action="store_true", help="skip the light models with random weights")
    parser.add_argument("--skip-roundtrip", action="store_true", help="skip the PyTorch round trips")
    parser.add_argument("--markdown", action="store_true", help="tables for docs/onnx.md")
    parser.add_argument("--cache-dir", help="compiled-library cache (default: a fresh temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["CONVC_CACHE_DIR"] = args.cache_dir or tmp
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if not args.skip_backend:
                backend_figures(args.markdown)
            if not args.skip_light:
                light_figures(args.markdown)
            if not args.skip_random:
                random_light_figures(args.markdown)
            if not args.skip_roundtrip:
                roundtrip_figures(args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
