"""Build: C source -> shared library with the system C compiler, cached by content hash.

The cache key covers the C source, the files it embeds (weights), convc's version, the
flags, the compiler's identity and, with -march=native, the CPU. Builds happen in a
private temporary folder and land with an atomic rename under a per-key file lock, so
concurrent compiles of one model never see a half-written library.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from . import __version__
from .cpu import cpu_identity
from .errors import BuildError

# -fopenmp-simd: `#pragma omp simd` only (no OpenMP runtime; the library has its own thread pool).
# -z nodelete: a model library stays mapped after its last Model is collected, because its pool's
# idle worker threads live in its code.
BASE_FLAGS = ("-O3", "-shared", "-fPIC", "-pthread", "-fopenmp-simd", "-DCONVC_OMP_SIMD", "-Wl,-z,nodelete",
              "-Wall", "-Wextra")
SANITIZE_FLAGS = ("-O1", "-g", "-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all")


@dataclass(frozen=True)
class BuildResult:
    path: Path
    cache_hit: bool
    seconds: float
    key: str


def default_cache_dir() -> Path:
    """$CONVC_CACHE_DIR, else $XDG_CACHE_HOME/convc, else ~/.cache/convc."""
    if os.environ.get("CONVC_CACHE_DIR"):
        return Path(os.environ["CONVC_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "convc"


def default_cc() -> str:
    return os.environ.get("CC") or "cc"


@lru_cache(maxsize=None)
def compiler_identity(cc: str) -> str:
    """The compiler's resolved path and version line; BuildError if it cannot run."""
    path = shutil.which(cc)
    if path is None:
        raise BuildError(f"C compiler {cc!r} not found: install one (Debian: apt-get install gcc) "
                         "or point $CC / cc= at it")
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BuildError(f"C compiler {cc!r} ({path}) does not run: {e}") from None
    return f"{os.path.realpath(path)}\n{out.stdout.splitlines()[0] if out.stdout else out.stderr[:200]}"


def compile_flags(march: str | None = "native", sanitize: bool = False, extra: tuple[str, ...] = ()) -> list[str]:
    flags = list(BASE_FLAGS)
    if march:
        flags.append(f"-march={march}")
    if sanitize:
        flags += SANITIZE_FLAGS
    return flags + list(extra)


def cache_key(code: str, files: dict[str, bytes], flags: list[str], cc: str) -> str:
    h = hashlib.sha256()
    for part in (__version__, code, json.dumps(flags), compiler_identity(cc),
                 cpu_identity() if any(f in ("-march=native", "-mcpu=native") for f in flags) else ""):
        h.update(part.encode())
        h.update(b"\0")
    for name in sorted(files):
        h.update(name.encode() + b"\0")
        h.update(hashlib.sha256(files[name]).digest())
    return h.hexdigest()[:40]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cached(lib: Path, stamp: Path) -> bool:
    """True if the cached library exists and its bytes are what was built (not truncated or tampered)."""
    try:
        return json.loads(stamp.read_text())["sha256"] == _digest(lib)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def build_library(code: str, files: dict[str, bytes] | None = None, *, cc: str | None = None,
                  flags: list[str] | None = None, cache_dir: str | os.PathLike | None = None) -> BuildResult:
    """Compile `code` (with `files` written beside it) into a cached shared library."""
    start = time.perf_counter()
    files = files or {}
    cc = cc or default_cc()
    flags = compile_flags() if flags is None else list(flags)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    key = cache_key(code, files, flags, cc)
    lib, stamp = cache / f"{key}.so", cache / f"{key}.json"
    if _cached(lib, stamp):
        return BuildResult(lib, True, time.perf_counter() - start, key)
    with open(cache / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _cached(lib, stamp):  # another process built it while we waited
            return BuildResult(lib, True, time.perf_counter() - start, key)
        with tempfile.TemporaryDirectory(prefix=f"build-{key[:12]}-", dir=cache) as tmp:
            work = Path(tmp)
            (work / "model.c").write_text(code)
            for name, data in files.items():
                (work / name).write_bytes(data)
            cmd = [shutil.which(cc) or cc, *flags, "model.c", "-o", "model.so", "-lm"]
            try:
                proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=3600)
            except OSError as e:
                raise BuildError(f"could not run the C compiler {cc!r}: {e}") from None
            if proc.returncode != 0 or not (work / "model.so").is_file():
                logs = cache / "logs"
                logs.mkdir(exist_ok=True)
                log = logs / f"{key}.log"
                log.write_text(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
                shutil.copyfile(work / "model.c", logs / f"{key}.c")
                first = next((ln for ln in proc.stderr.splitlines() if "error" in ln), proc.stderr[:300])
                raise BuildError(f"the C compiler failed (exit {proc.returncode}): {first}", str(log))
            os.replace(work / "model.so", lib)
        tmp_stamp = stamp.with_suffix(".json.tmp")
        tmp_stamp.write_text(json.dumps({"sha256": _digest(lib), "flags": flags, "cc": cc,
                                         "convc": __version__, "warnings": proc.stderr}))
        os.replace(tmp_stamp, stamp)
    return BuildResult(lib, False, time.perf_counter() - start, key)
