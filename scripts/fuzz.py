"""Long fuzz run: random model descriptions (valid and broken) through load -> compile -> call.

    python scripts/fuzz.py --examples 2000
    python scripts/fuzz.py --examples 1000000 --seconds 3600    # an hour
    python scripts/fuzz.py --seconds 60 --seed 7 --cache-dir /tmp/fuzz-cache

Every outcome must be a correct result (checked against the interpreter) or a documented convc
exception; anything else stops the run with the failing description (hypothesis shrinks it first).
A hang is caught by faulthandler after --hang-seconds and kills the run with a traceback.
Prints the count of each outcome at the end.
"""
from __future__ import annotations

import argparse
import collections
import faulthandler
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402

from fuzzing import descriptions, opt_levels, run_description  # noqa: E402


BATCH = 200


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--examples", type=int, default=1000, help="number of descriptions (default 1000)")
    p.add_argument("--seconds", type=float, help="also stop after about this long")
    p.add_argument("--seed", type=int, default=int(time.time()), help="random seed (default: the time)")
    p.add_argument("--cache-dir", help="compiled-library cache (default: a fresh temporary folder)")
    p.add_argument("--hang-seconds", type=float, default=300, help="one example taking longer is a hang")
    args = p.parse_args(argv)

    cache = Path(args.cache_dir) if args.cache_dir else Path(tempfile.mkdtemp(prefix="convc-fuzz-"))
    counts: collections.Counter[str] = collections.Counter()
    start = time.monotonic()

    def out_of_time() -> bool:
        return args.seconds is not None and time.monotonic() - start > args.seconds

    def one(case, opt_level):
        desc, mutated = case
        faulthandler.dump_traceback_later(args.hang_seconds, exit=True)
        try:
            outcome = run_description(desc, cache_dir=cache, opt_level=opt_level)
        finally:
            faulthandler.cancel_dump_traceback_later()
        counts[f"{outcome} ({'mutated' if mutated else 'generated'})"] += 1
        done = sum(counts.values())
        if done % 100 == 0:
            print(f"{done} examples, {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)

    print(f"seed {args.seed}, cache {cache}")
    # Rounds of BATCH examples, each from its own seed, until the example count or the time is used up.
    round_ = 0
    while sum(counts.values()) < args.examples and not out_of_time():
        n = min(BATCH, args.examples - sum(counts.values()))
        config = settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        run = seed(args.seed + round_)(config(given(descriptions(), opt_levels)(one)))
        try:
            run()
        except BaseException:
            print(f"FAILED in round {round_} (seed {args.seed + round_}) after", dict(counts))
            raise
        round_ += 1
    print(json.dumps({"seed": args.seed, "examples": sum(counts.values()),
                      "seconds": round(time.monotonic() - start, 1), "outcomes": dict(sorted(counts.items()))},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
