"""Interleaved timing: rounds in which every engine runs a short block of calls, so load changes on a
shared machine hit all engines alike."""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Timing:
    median: float  # seconds
    low: float
    high: float
    runs: int


def interleaved(engines: dict[str, Callable[[], object]], warmup: int, budget_s: float, min_runs: int = 5,
                max_runs: int = 200, pause_s: float = 0.025, block_s: float = 0.05) -> dict[str, Timing]:
    """Warm every engine up, then time rounds until `budget_s` is spent (`min_runs`..`max_runs` calls each).

    In a round each engine (in an order that rotates every round) first idles `pause_s` — longer than
    the engines' thread pools spin after work, so no engine is timed while another's idle threads still
    compete for the cores — then makes one untimed call and a block of timed back-to-back calls
    (about `block_s` long): steady-state latency, as in a serving loop.
    """
    per_call = {}
    for name, call in engines.items():
        for _ in range(warmup):
            call()
        start = time.perf_counter()
        call()
        per_call[name] = time.perf_counter() - start
    block = {name: max(1, min(1000, round(block_s / max(t, 1e-9)))) for name, t in per_call.items()}
    per_round = sum(per_call[n] * (block[n] + 1) + pause_s for n in engines)
    rounds = int(max(1, min(max_runs, budget_s / max(per_round, 1e-9))))
    rounds = max(rounds, -(-min_runs // min(block.values())))
    samples: dict[str, list[float]] = {name: [] for name in engines}
    names = list(engines)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            time.sleep(pause_s)
            engines[name]()
            for _ in range(block[name]):
                start = time.perf_counter()
                engines[name]()
                samples[name].append(time.perf_counter() - start)
    return {name: Timing(statistics.median(s), min(s), max(s), len(s)) for name, s in samples.items()}
