"""The machine the generated C is for: its ISA features, vector width and registers, caches and threads.

Every back-end decision that depends on the machine (vector lanes, register blocking, cache-aware loop
order, kernel cost models) reads a `Target`, which the caller passes explicitly (`compile(march=...)`,
`generate_c(target=...)`, `emit_c(target=...)`, the CLI's `--march`). A Target is derived from a
-march name:

- "native": the host. This module is the only place that looks at the host CPU (through archspec, which
  reads /proc/cpuinfo, and Linux's sysfs for the caches); the runtime's ISA check is the only other reader.
- "x86-64-v3" (AVX2 + FMA: 8 lanes, 16 vector registers), "x86-64-v4" (AVX-512: 16 lanes, 32 registers),
  or any other -march name: archspec's tables when it knows the name (zen4, skylake_avx512, haswell, ...),
  else the instruction-set macros the C compiler defines for `-march=NAME`.
- "none" (or None): no -march flag; the compiler's baseline for the host's architecture family
  (x86-64: SSE2, 4 lanes, 16 registers).

Named targets assume typical caches (Target.TYPICAL_CACHES); only "native" measures the host's.
"""
from __future__ import annotations

import os
import platform
import re
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

KIB, MIB = 1024, 1024 * 1024


@dataclass(frozen=True)
class Target:
    """A code-generation target. `march` is the -march value given to cc (None: no -march flag)."""
    name: str  # what the user asked for ("native", "x86-64-v3", "none", ...)
    march: str | None
    arch: str  # architecture family: "x86_64", "aarch64", ...
    features: frozenset[str] = field(repr=False)  # ISA extensions, as /proc/cpuinfo and archspec spell them
    vector_bits: int  # width of the vectors the kernels use: 512 (AVX-512), 256 (AVX/AVX2), 128 (SSE, NEON)
    vector_registers: int  # 32 (AVX-512, AArch64), 16 (AVX2, SSE)
    l1d_bytes: int
    l2_bytes: int  # per core
    l3_bytes: int
    threads: int | None  # the host's CPUs for "native"; None: unknown here, decided where the library runs
    microarchitecture: str = ""  # archspec's name for it, when archspec knows it

    @property
    def lanes(self) -> int:
        """float32 values per vector."""
        return self.vector_bits // 32

    @property
    def isa(self) -> str:
        """A short name of the vector ISA: "avx512", "avx2", "avx", "sse2", "neon" or "scalar"."""
        for flag, name in (("avx512f", "avx512"), ("avx2", "avx2"), ("avx", "avx"), ("sse2", "sse2"),
                           ("asimd", "neon")):
            if flag in self.features:
                return name
        return "scalar"

    @property
    def has_fma(self) -> bool:
        return "fma" in self.features or "avx512f" in self.features or self.arch == "aarch64"

    def cflags(self) -> list[str]:
        return [f"-march={self.march}"] if self.march else []

    def describe(self) -> str:
        """One line for summaries and benchmark tables."""
        threads = f", {self.threads} threads" if self.threads else ""
        arch = f" ({self.microarchitecture})" if self.microarchitecture and self.microarchitecture != self.name else ""
        return (f"{self.name}{arch}: {self.isa}, {self.lanes} lanes, {self.vector_registers} vector registers, "
                f"L2 {self.l2_bytes // KIB} KiB{threads}")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_march(cls, march: "str | Target | None" = "native", cc: str | None = None) -> "Target":
        """The Target of a -march value ("native", "x86-64-v3", "znver4", "none", None, or a Target as is).
        cc: the C compiler asked about names archspec does not know (default $CC, else cc)."""
        if isinstance(march, Target):
            return march
        if march is None or march == "none":
            return baseline_target()
        if not isinstance(march, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}", march):
            raise ValueError(f"march must be a -march name such as native, x86-64-v3 or x86-64-v4 (or none), "
                             f"got {march!r}")
        if march == "native":
            return host_target()
        return named_target(march, cc)


# Caches assumed for a named target (a machine this process cannot measure): a current x86 server core.
TYPICAL_CACHES = (32 * KIB, 1 * MIB, 32 * MIB)


def _vector_shape(arch: str, features: frozenset[str]) -> tuple[int, int]:
    """(vector bits, vector registers) the kernels should use."""
    if arch == "x86_64":
        if "avx512f" in features:
            return 512, 32
        if "avx" in features:
            return 256, 16
        return 128, 16
    if arch == "aarch64":
        return 128, 32
    return 128, 16


def _make(name: str, march: str | None, arch: str, features: frozenset[str], caches: tuple[int, int, int],
          threads: int | None, microarchitecture: str = "") -> Target:
    bits, registers = _vector_shape(arch, features)
    return Target(name, march, arch, features, bits, registers, *caches, threads, microarchitecture)


def _host_arch() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


@lru_cache(maxsize=None)
def baseline_target() -> Target:
    """No -march: the compiler's default for this architecture family (x86-64: SSE2)."""
    arch = _host_arch()
    return _make("none", None, arch, _family_features(arch), TYPICAL_CACHES, None)


CACHE_SYSFS = Path("/sys/devices/system/cpu/cpu0/cache")


def _sysfs_size(text: str) -> int | None:
    """"32K", "512K", "32768K", "1M" (Linux's cache sizes) in bytes."""
    match = re.fullmatch(r"(\d+)\s*([KMG]?)", text.strip())
    if not match:
        return None
    return int(match[1]) * {"": 1, "K": KIB, "M": MIB, "G": 1024 * MIB}[match[2]]


def _sysfs_caches(root: Path = CACHE_SYSFS) -> dict[int, int]:
    """{level: bytes} of the data and unified caches one core sees, from Linux's sysfs (what getconf reads;
    Python's os.sysconf has no cache names)."""
    caches: dict[int, int] = {}
    for index in sorted(root.glob("index[0-9]*")):
        try:
            level = int((index / "level").read_text())
            kind = (index / "type").read_text().strip()
            size = _sysfs_size((index / "size").read_text())
        except (OSError, ValueError):
            continue
        if kind in ("Data", "Unified") and size:
            caches[level] = size
    return caches


def _sysconf(name: str, default: int) -> int:
    try:
        value = os.sysconf(name)
    except (ValueError, OSError):
        return default
    return value if value and value > 0 else default


def host_caches(root: Path = CACHE_SYSFS) -> tuple[int, int, int]:
    """L1d, L2 (per core) and L3 of the host: sysfs, else sysconf, else Target.TYPICAL_CACHES."""
    found = _sysfs_caches(root)
    names = ("SC_LEVEL1_DCACHE_SIZE", "SC_LEVEL2_CACHE_SIZE", "SC_LEVEL3_CACHE_SIZE")
    return tuple(found.get(level) or _sysconf(name, typical)  # type: ignore[return-value]
                 for level, name, typical in zip((1, 2, 3), names, TYPICAL_CACHES))


@lru_cache(maxsize=None)
def host_target() -> Target:
    """The machine running this process ("native"): features from archspec, caches from sysfs."""
    import archspec.cpu

    host = archspec.cpu.host()
    arch = _host_arch()
    features = frozenset(host.features) | _family_features(arch)
    caches = host_caches()
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return _make("native", "native", arch, features, caches, threads, host.name)


def _family_features(arch: str) -> frozenset[str]:
    return frozenset({"sse", "sse2"}) if arch == "x86_64" else frozenset()


@lru_cache(maxsize=None)
def named_target(march: str, cc: str | None = None) -> Target:
    """A -march name: archspec's features if it knows the name (x86-64-v3 is its x86_64_v3), else the
    compiler's (the instruction-set macros it predefines for -march=NAME)."""
    import archspec.cpu

    key = march.replace("-", "_")
    known = archspec.cpu.TARGETS.get(key) or archspec.cpu.TARGETS.get(march)
    if known is not None:
        arch = str(known.family)
        return _make(march, march, arch, frozenset(known.features) | _family_features(arch), TYPICAL_CACHES,
                     None, known.name)
    arch, features = _compiler_features(march, cc)
    return _make(march, march, arch, features | _family_features(arch), TYPICAL_CACHES, None)


def _compiler_features(march: str, cc: str | None) -> tuple[str, frozenset[str]]:
    from runtime.cpu import ISA_MACROS

    compiler = cc or os.environ.get("CC") or "cc"
    try:
        proc = subprocess.run([compiler, f"-march={march}", "-dM", "-E", "-x", "c", os.devnull],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ValueError(f"march {march!r}: archspec does not know it and the C compiler {compiler!r} could not "
                         f"be asked ({e})") from None
    if proc.returncode != 0:
        first = next((ln for ln in proc.stderr.splitlines() if "error" in ln), proc.stderr.strip()[:200])
        raise ValueError(f"march {march!r} is neither a microarchitecture archspec knows nor one the C compiler "
                         f"{compiler!r} accepts: {first}")
    macros = {line.split()[1] for line in proc.stdout.splitlines() if line.startswith("#define ")}
    arch = "x86_64" if "__x86_64__" in macros else ("aarch64" if "__aarch64__" in macros else _host_arch())
    return arch, frozenset(flag for macro, flag in ISA_MACROS if macro in macros)
