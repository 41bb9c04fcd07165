"""Generated C under AddressSanitizer + UBSan: every golden case runs clean, and the harness does catch errors.

The sanitizer runtimes must be preloaded into Python, so each check runs in a subprocess with
LD_PRELOAD set (docs/SECURITY.md shows the same command for users).
"""
import os
import subprocess
import sys

import pytest

from compiler.passes import PIPELINES
from compiler.pipeline import DEFAULT_OPT_LEVEL
from conftest import ROOT
from test_golden_ops import CASES

SANITIZER_REPORTS = ("ERROR: AddressSanitizer", "runtime error:", "SUMMARY: UndefinedBehaviorSanitizer",
                     "SUMMARY: AddressSanitizer")


def sanitizer_env() -> dict[str, str]:
    libs = []
    for name in ("libasan.so", "libubsan.so"):
        path = subprocess.run([os.environ.get("CC", "cc"), f"-print-file-name={name}"], capture_output=True,
                              text=True).stdout.strip()
        assert os.path.isabs(path) and os.path.exists(path), f"{name} not found; install gcc's sanitizer runtimes"
        libs.append(path)
    return {**os.environ, "LD_PRELOAD": " ".join(libs), "PYTHONPATH": str(ROOT),
            "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1:allocator_may_return_null=1",
            "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}


def run_sanitized(args: list[str], timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=sanitizer_env(),
                          cwd=ROOT, timeout=timeout)


def test_every_golden_case_is_clean_under_asan_and_ubsan():
    proc = run_sanitized([str(ROOT / "scripts" / "sanitize_golden.py")])
    reports = [r for r in SANITIZER_REPORTS if r in proc.stderr]
    assert proc.returncode == 0 and not reports, f"exit {proc.returncode}, reports {reports}\n{proc.stderr[-4000:]}"
    levels = sorted({0, DEFAULT_OPT_LEVEL, max(PIPELINES)})
    assert f"sanitized {len(CASES) * len(levels)} builds ({len(CASES)} cases at opt levels {levels}), " \
           "0 mismatches" in proc.stdout
    assert sum(line.startswith("ok ") for line in proc.stdout.splitlines()) == len(CASES) * len(levels)


# Canaries: the same harness must report a real overflow and a real UB, or its silence proves nothing.
OVERFLOW = """
import numpy as np, compiler, runtime.model as rm
m = compiler.compile({"input": {"name": "x", "shape": [4, 32, 32]}, "layers": [{"op": "relu"}]}, sanitize=True)
x = np.ones((2, 4, 32, 32), np.float32)
y = np.empty((1, 4, 32, 32), np.float32)  # room for one sample; the library is told two
ins = rm._ffi.new("const float *[]", [rm._ffi.from_buffer("float[]", x)])
outs = rm._ffi.new("float *[]", [rm._ffi.from_buffer("float[]", y)])
arena = np.empty(max(m.arena_floats, 1), np.float32)
m._lib.convc_run(2, ins, outs, rm._ffi.from_buffer("float[]", arena), 1)
print("not caught")
"""

SIGNED_OVERFLOW = """
import cffi
from runtime.build import build_library, compile_flags
code = "int convc_canary(int x) { return x + 1; }\\n"
lib = build_library(code, flags=compile_flags(march=None, sanitize=True))
ffi = cffi.FFI(); ffi.cdef("int convc_canary(int x);")
print(ffi.dlopen(str(lib.path)).convc_canary(2147483647))
print("not caught")
"""


@pytest.mark.parametrize("code, report", [(OVERFLOW, "heap-buffer-overflow"),
                                          (SIGNED_OVERFLOW, "signed integer overflow")], ids=["asan", "ubsan"])
def test_the_sanitized_harness_reports_real_errors(code, report):
    proc = run_sanitized(["-c", code], timeout=300)
    assert proc.returncode != 0 and "not caught" not in proc.stdout
    assert report in proc.stderr, proc.stderr[-3000:]


def test_sanitized_library_without_the_runtime_is_a_clear_error_not_an_exit(tmp_path):
    import compiler
    from compiler import LibraryError
    with pytest.raises(LibraryError) as e:
        compiler.compile({"input": {"shape": [2, 4, 4]}, "layers": [{"op": "relu"}]}, sanitize=True,
                         cache_dir=tmp_path)
    assert "sanitize=True" in str(e.value) and "LD_PRELOAD" in str(e.value)
