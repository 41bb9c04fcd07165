"""Long ONNX mutation-fuzzing run: real models edited at the protobuf level, through load -> compile -> call.

    python scripts/onnx_fuzz.py --cases 10000 --seed 1
    python scripts/onnx_fuzz.py --cases 1000000 --seconds 3600 --models squeezenet,lenet5

Case i mutates one seed model (chosen by weight, deterministically from --seed and i) with one to three
of the mutations in tests/onnx_fuzzing.py. Every outcome must be a correct result (checked against
onnxruntime where it runs the mutated model, else the interpreter) or a ModelError/ShapeError naming the
file and what in it is wrong. A failure is recorded (its model kept in --failures) and the run goes on;
a hang stops the run with tracebacks after --hang-seconds, and a crash ends it (the last case printed
is the one that crashed). --case N replays one case. Prints the count of each outcome at the end and
exits 1 if any case failed.
"""
from __future__ import annotations

import argparse
import collections
import faulthandler
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import numpy as np  # noqa: E402

from onnx_fuzzing import EXAMPLES, EXTERNAL, OrtWorker, load_seed, run_case  # noqa: E402

# Cases per seed in proportion to these weights: the light models cost 1-15 s to compile when a mutant is
# accepted, the examples well under one.
WEIGHTS = {**{name: 4.0 for name in EXAMPLES}, EXTERNAL: 4.0, "squeezenet": 1.0, "shufflenet": 0.8,
           "inception_v1": 0.5, "resnet50": 0.3, "inception_v2": 0.3, "densenet121": 0.2, "bvlc_alexnet": 0.15,
           "zfnet512": 0.15, "vgg19": 0.08}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=1000)
    p.add_argument("--seconds", type=float, help="also stop after about this long")
    p.add_argument("--seed", type=int, default=int(time.time()))
    p.add_argument("--models", help=f"comma-separated seed models (default all: {', '.join(WEIGHTS)})")
    p.add_argument("--case", type=int, help="replay only this case number")
    p.add_argument("--cache-dir", help="compiled-library cache (default: a fresh temporary folder)")
    p.add_argument("--failures", default="onnx-fuzz-failures", help="folder for the models of failed cases")
    p.add_argument("--hang-seconds", type=float, default=600)
    p.add_argument("--max-memory-gb", type=float, default=16, help="address-space limit: a runaway allocation "
                   "becomes a MemoryError (a failure) instead of exhausting the machine")
    args = p.parse_args(argv)

    limit = int(args.max_memory_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    names = args.models.split(",") if args.models else list(WEIGHTS)
    weights = np.array([WEIGHTS.get(n, 1.0) for n in names])
    seeds = {}
    cache = Path(args.cache_dir) if args.cache_dir else Path(tempfile.mkdtemp(prefix="convc-onnx-fuzz-"))
    work = Path(tempfile.mkdtemp(prefix="convc-onnx-case-"))
    ort = OrtWorker()
    counts: collections.Counter[str] = collections.Counter()
    by_model: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    by_mutation: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    failures = []
    start = time.monotonic()
    cases = [args.case] if args.case is not None else range(args.cases)
    print(f"seed {args.seed}, cache {cache}", flush=True)
    for i in cases:
        if args.seconds is not None and time.monotonic() - start > args.seconds:
            break
        case_seed = args.seed * 1_000_003 + i
        name = names[int(np.random.default_rng(case_seed).choice(len(names), p=weights / weights.sum()))]
        if name not in seeds:
            seeds[name] = load_seed(name)
        print(f"case {i}: {name}", file=sys.stderr, flush=True)
        faulthandler.dump_traceback_later(args.hang_seconds, exit=True)
        try:
            outcome = run_case(seeds[name], case_seed, work / "case", ort, cache_dir=cache)
        finally:
            faulthandler.cancel_dump_traceback_later()
        outcome_name = outcome.name.split("-")[0] if outcome.name.startswith("ok") else outcome.name
        counts[outcome.name] += 1
        by_model[name][outcome_name] += 1
        for m in outcome.mutations:
            by_mutation[m.split(":")[0]][outcome_name] += 1
        if outcome.name == "FAIL":
            keep = Path(args.failures) / f"case{i}-{name}"
            shutil.copytree(work / "case", keep, dirs_exist_ok=True)
            failures.append({"case": i, "model": name, "mutations": outcome.mutations,
                             "detail": outcome.detail[:3000], "kept": str(keep)})
            print(f"FAILED case {i} ({name}): {outcome.mutations}\n{outcome.detail[:3000]}", flush=True)
        if len(failures) >= 50:
            print("stopping after 50 failures", flush=True)
            break
    ort.close()
    done = sum(counts.values())
    print(json.dumps({"seed": args.seed, "cases": done, "seconds": round(time.monotonic() - start, 1),
                      "outcomes": dict(sorted(counts.items())), "onnxruntime_crashes": ort.crashes,
                      "by_model": {k: dict(v) for k, v in sorted(by_model.items())},
                      "by_mutation": {k: dict(v) for k, v in sorted(by_mutation.items())},
                      "failures": failures}, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
