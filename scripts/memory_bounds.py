"""Long-lived process bounds (the figures in docs/SECURITY.md):

    python scripts/memory_bounds.py                       # 100,000 calls of LeNet-5; 500 distinct models
    python scripts/memory_bounds.py --calls 20000 --models 40

1. RSS after a warm-up and after --calls calls of one model (batch 1): must grow by less than 1%.
2. --loads loads (and a call) of one saved library: nothing may grow per load.
3. --models distinct small models compiled, loaded, called once and dropped: RSS, mapped regions and files,
   open descriptors, threads and Python objects at checkpoints, and the growth per model. Prints JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from memory_bounds import many_models, repeated_calls, repeated_loads  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=100_000)
    p.add_argument("--models", type=int, default=500)
    p.add_argument("--loads", type=int, default=2000, help="loads of one saved library")
    p.add_argument("--cache-dir", help="compiled-library cache (default: a fresh temporary folder)")
    args = p.parse_args(argv)
    result = {"repeated_calls": repeated_calls(args.calls), "repeated_loads": repeated_loads(args.loads),
              "many_models": many_models(args.models, args.cache_dir)}
    print(json.dumps(result, indent=2))
    return 0 if result["repeated_calls"]["growth_fraction"] < 0.01 else 1


if __name__ == "__main__":
    sys.exit(main())
