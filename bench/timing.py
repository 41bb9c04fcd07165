"""Interleaved timing: each round calls every engine once, so load changes hit all of them alike."""
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
                max_runs: int = 200, pause_s: float = 0.005) -> dict[str, Timing]:
    """Warm every engine up, then time rounds of one call each until `budget_s` is spent (within the run limits).

    The order rotates every round, so each engine follows each other one equally often, and a pause
    after every call lets the previous engine's spinning worker threads go idle: otherwise an engine
    is timed while another one's threads still compete for the cores.
    """
    per_call = {}
    for name, call in engines.items():
        for _ in range(warmup):
            call()
        start = time.perf_counter()
        call()
        per_call[name] = time.perf_counter() - start
    per_round = sum(per_call.values()) + pause_s * len(engines)
    runs = int(max(min_runs, min(max_runs, budget_s / max(per_round, 1e-9))))
    samples: dict[str, list[float]] = {name: [] for name in engines}
    names = list(engines)
    for r in range(runs):
        for name in names[r % len(names):] + names[:r % len(names)]:
            time.sleep(pause_s)
            start = time.perf_counter()
            engines[name]()
            samples[name].append(time.perf_counter() - start)
    return {name: Timing(statistics.median(s), min(s), max(s), len(s)) for name, s in samples.items()}
