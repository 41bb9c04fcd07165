"""Build: C source -> shared library with the system C compiler, cached by content hash.

The cache key covers the C source, the files it embeds (weights), convc's version, the
flags, the compiler's identity and, with -march=native, the CPU. Builds happen in a
private temporary folder and land with an atomic rename under a per-key file lock, so
concurrent compiles of one model never see a half-written library. Each library carries
a checksum stamp (runtime/elf.py); the cache is bounded and evicts least-recently-used
entries (runtime/cache.py).
"""
from __future__ import annotations

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
from typing import Any, Callable

from . import __version__, cache as cache_folder
from .cpu import cpu_identity
from .elf import check_library, stamp
from .errors import BuildError, LibraryError

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
    opened: Any = None  # what open_library returned, called while the entry could not be evicted
    evicted: int = 0  # entries this build evicted to keep the cache under its cap


def default_cache_dir() -> Path:
    """$CONVC_CACHE_DIR, else $XDG_CACHE_HOME/convc, else ~/.cache/convc."""
    if os.environ.get("CONVC_CACHE_DIR"):
        return Path(os.environ["CONVC_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "convc"


def build_jobs() -> int:
    """cc processes a build may run at once: the CPUs this process may use (the build machine's, which is
    not the target's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


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


def cache_key(code: str, files: dict[str, bytes], flags: list[str], cc: str,
              units: dict[str, str] | None = None) -> str:
    h = hashlib.sha256()
    for part in (__version__, code, json.dumps(flags), compiler_identity(cc),
                 cpu_identity() if any(f in ("-march=native", "-mcpu=native") for f in flags) else ""):
        h.update(part.encode())
        h.update(b"\0")
    for name in sorted(units or {}):
        h.update(name.encode() + b"\0" + units[name].encode() + b"\0")
    for name in sorted(files):
        h.update(name.encode() + b"\0")
        h.update(hashlib.sha256(files[name]).digest())
    return h.hexdigest()[:40]


def _cached(lib: Path, record: Path) -> bool:
    """True if the library is intact (its checksum stamp matches) and its build record is readable."""
    try:
        json.loads(record.read_text())["flags"]
        with open(lib, "rb") as f:
            check_library(f, os.fstat(f.fileno()).st_size, str(lib))
        return True
    except (OSError, ValueError, KeyError, TypeError, LibraryError):
        return False


def build_library(code: str, files: dict[str, bytes] | None = None, *, cc: str | None = None,
                  flags: list[str] | None = None, cache_dir: str | os.PathLike | None = None,
                  cache_max_bytes: int | str | None = None,
                  open_library: Callable[[Path], Any] | None = None,
                  units: dict[str, str] | None = None) -> BuildResult:
    """Compile `code` (with `files` written beside it, and linked with the translation units `units`, name ->
    C source, each compiled by its own cc process at the same time) into a cached shared library.

    cache_max_bytes: the cache's cap (default $CONVC_CACHE_MAX_BYTES, else 2 GiB); after a build,
    least-recently-used entries are evicted until the cache fits. open_library: called with the
    library's path while no other process can evict it (its result is BuildResult.opened).
    """
    start = time.perf_counter()
    files = files or {}
    cc = cc or default_cc()
    flags = compile_flags() if flags is None else list(flags)
    cap = cache_folder.max_bytes(cache_max_bytes)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    units = units or {}
    key = cache_key(code, files, flags, cc, units)
    lib, record, _ = cache_folder.entry_paths(cache, key)

    def hit() -> BuildResult:
        cache_folder.touch(record)
        opened = open_library(lib) if open_library else None
        return BuildResult(lib, True, time.perf_counter() - start, key, opened)

    with cache_folder.entry_lock(cache, key, shared=True):
        if _cached(lib, record):
            return hit()
    with cache_folder.entry_lock(cache, key):
        if _cached(lib, record):  # another process built it while we waited
            return hit()
        warnings = _build(code, files, cc, flags, cache, key, lib, units)
        tmp_record = record.with_suffix(".json.tmp")
        tmp_record.write_text(json.dumps({"flags": flags, "cc": cc, "convc": __version__, "warnings": warnings}))
        os.replace(tmp_record, record)
        opened = open_library(lib) if open_library else None
    evicted = cache_folder.prune(cache, cap, keep=frozenset({key}), wait=False)
    return BuildResult(lib, False, time.perf_counter() - start, key, opened, len(evicted))


def _build(code: str, files: dict[str, bytes], cc: str, flags: list[str], cache: Path, key: str, lib: Path,
           units: dict[str, str]) -> str:
    """Run the compiler in a private folder and move the stamped library to `lib`; returns its warnings.
    With units, every source compiles to an object file in its own process at once, then they link."""
    with tempfile.TemporaryDirectory(prefix=f"build-{key[:12]}-", dir=cache) as tmp:
        work = Path(tmp)
        (work / "model.c").write_text(code)
        for name, data in files.items():
            (work / name).write_bytes(data)
        for name, source in units.items():
            (work / name).write_text(source)
        exe = shutil.which(cc) or cc
        if units:
            sources = ["model.c", *sorted(units)]
            steps = [[[exe, *flags, "-c", c, "-o", c[:-2] + ".o"] for c in sources],
                     [[exe, *flags, *(c[:-2] + ".o" for c in sources), "-o", "model.so", "-lm"]]]
        else:
            steps = [[[exe, *flags, "model.c", "-o", "model.so", "-lm"]]]
        stderr = ""
        for commands in steps:
            try:
                procs = [(cmd, subprocess.Popen(cmd, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                text=True)) for cmd in commands]
            except OSError as e:
                raise BuildError(f"could not run the C compiler {cc!r}: {e}") from None
            for cmd, proc in procs:
                try:
                    out, err = proc.communicate(timeout=3600)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    out, err = proc.communicate()
                stderr += err
                if proc.returncode != 0:
                    for _, other in procs:
                        if other.poll() is None:
                            other.kill()
                            other.communicate()
                    _fail(cache, key, work, cmd, proc.returncode, out + err, err)
        if not (work / "model.so").is_file():
            _fail(cache, key, work, steps[-1][0], 0, stderr, stderr)
        (work / "model.stamped.so").write_bytes(stamp((work / "model.so").read_bytes()))
        os.replace(work / "model.stamped.so", lib)
    return stderr


def _fail(cache: Path, key: str, work: Path, cmd: list[str], returncode: int, output: str, stderr: str):
    """Keep the log and the sources under the cache's logs folder and raise a BuildError naming them."""
    logs = cache / cache_folder.LOGS
    logs.mkdir(exist_ok=True)
    log = logs / f"{key}.log"
    log.write_text(f"$ {' '.join(cmd)}\n{output}")
    for source in work.glob("*.c"):
        shutil.copyfile(source, logs / (f"{key}.c" if source.name == "model.c" else f"{key}.{source.name}"))
    first = next((ln for ln in stderr.splitlines() if "error" in ln), stderr[:300])
    raise BuildError(f"the C compiler failed (exit {returncode}): {first}", str(log))
