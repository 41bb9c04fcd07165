"""Does this CPU have the instruction-set extensions a compiled library was built for?

A library built with -march=native on one machine (or with -mavx512f ...) dies with SIGILL on a CPU
without them. The library lists what it assumes in the string `convc_required_isa` (data, read
without running any of its code); this module compares that list with the CPU's flags.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=None)
def cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags from /proc/cpuinfo ("flags" on x86, "Features" on ARM); None if unknown."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return None


def missing_features(required: str | list[str], flags: frozenset[str] | None = None) -> list[str]:
    """The required features this CPU lacks (none if the CPU's flags cannot be read)."""
    flags = cpu_flags() if flags is None else flags
    if flags is None:
        return []
    names = required.split() if isinstance(required, str) else required
    return [n for n in names if n not in flags]
