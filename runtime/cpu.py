"""Does this CPU have the instruction-set extensions a compiled library was built for?

A library built with -march=native on one machine (or with -mavx512f ...) dies with SIGILL on a CPU
without them. The library lists what it assumes in the string `convc_required_isa` (data, read
without running any of its code); this module compares that list with the CPU's flags. It is the
runtime's only reader of /proc/cpuinfo (the compiler's is compiler/target.py).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path


# x86 compiler macros for instruction-set extensions -> the CPU flag (as /proc/cpuinfo spells it) each needs.
ISA_MACROS: tuple[tuple[str, str], ...] = (
    ("__SSE3__", "pni"),
    ("__SSSE3__", "ssse3"),
    ("__SSE4_1__", "sse4_1"),
    ("__SSE4_2__", "sse4_2"),
    ("__SSE4A__", "sse4a"),
    ("__POPCNT__", "popcnt"),
    ("__AVX__", "avx"),
    ("__AVX2__", "avx2"),
    ("__FMA__", "fma"),
    ("__F16C__", "f16c"),
    ("__BMI__", "bmi1"),
    ("__BMI2__", "bmi2"),
    ("__AVX512F__", "avx512f"),
    ("__AVX512CD__", "avx512cd"),
    ("__AVX512BW__", "avx512bw"),
    ("__AVX512DQ__", "avx512dq"),
    ("__AVX512VL__", "avx512vl"),
    ("__AVX512IFMA__", "avx512ifma"),
    ("__AVX512VBMI__", "avx512vbmi"),
    ("__AVX512VBMI2__", "avx512_vbmi2"),
    ("__AVX512VNNI__", "avx512_vnni"),
    ("__AVX512BITALG__", "avx512_bitalg"),
    ("__AVX512VPOPCNTDQ__", "avx512_vpopcntdq"),
    ("__AVX512BF16__", "avx512_bf16"),
    ("__AVX512FP16__", "avx512_fp16"),
    ("__AVXVNNI__", "avx_vnni"),
    ("__AMX_TILE__", "amx_tile"),
    ("__AMX_INT8__", "amx_int8"),
    ("__AMX_BF16__", "amx_bf16"),
    ("__AVX512VP2INTERSECT__", "avx512_vp2intersect"),
    ("__LZCNT__", "abm"),
    ("__MOVBE__", "movbe"),
    ("__ADX__", "adx"),
    ("__GFNI__", "gfni"),
    ("__VAES__", "vaes"),
    ("__VPCLMULQDQ__", "vpclmulqdq"),
    ("__PCLMUL__", "pclmulqdq"),
    ("__AES__", "aes"),
    ("__SHA__", "sha_ni"),
    ("__FMA4__", "fma4"),
    ("__XOP__", "xop"),
    ("__TBM__", "tbm"),
    ("__ABM__", "abm"),
    ("__LWP__", "lwp"),
)


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


@lru_cache(maxsize=None)
def cpu_identity() -> str:
    """What identifies this CPU for the build cache (a -march=native library is only valid on it)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        import platform
        return platform.processor() or platform.machine()
    keep = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags", "Features", "CPU part"))]
    return "\n".join(sorted(set(keep)))


def missing_isa(features) -> list[str]:
    """The instruction-set extensions among `features` (a Target's) that this CPU lacks ([] if it runs its code)."""
    return missing_features(sorted(set(features) & {flag for _, flag in ISA_MACROS}))


def missing_features(required: str | list[str], flags: frozenset[str] | None = None) -> list[str]:
    """The required features this CPU lacks (none if the CPU's flags cannot be read)."""
    flags = cpu_flags() if flags is None else flags
    if flags is None:
        return []
    names = required.split() if isinstance(required, str) else required
    return [n for n in names if n not in flags]
