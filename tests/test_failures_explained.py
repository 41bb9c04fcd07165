"""Each way a build or a library can fail gives an error naming the cause and the fix."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import compiler
import runtime
import runtime.model
from compiler import BuildError, LibraryError
from runtime.cpu import cpu_flags, missing_features
from runtime.elf import stamp
from conftest import model_dict, random_input


def tiny():
    return model_dict([{"name": "c", "op": "conv2d", "filters": 2, "kernel": 3}, {"op": "relu"}], shape=(1, 6, 6))


def test_missing_c_compiler(tmp_path):
    with pytest.raises(BuildError) as e:
        compiler.compile(tiny(), cc=str(tmp_path / "no-such-cc"), cache_dir=tmp_path)
    msg = str(e.value)
    assert "no-such-cc" in msg and "not found" in msg and "apt-get install gcc" in msg and "$CC" in msg


def test_compiler_error_keeps_the_log_and_the_source(tmp_path):
    with pytest.raises(BuildError) as e:
        compiler.compile(tiny(), cflags=["-fno-such-option-for-convc"], cache_dir=tmp_path)
    err = e.value
    assert err.log_path and err.log_path in str(err) and "the C compiler failed" in str(err)
    log = Path(err.log_path)
    assert log.is_file() and "-fno-such-option-for-convc" in log.read_text()
    assert log.with_suffix(".c").is_file() and "convc_run" in log.with_suffix(".c").read_text()
    assert not list(tmp_path.glob("*.so")) and not list(tmp_path.glob("build-*"))  # nothing half-built left


def test_library_from_another_convc_version(tmp_path, monkeypatch):
    path = compiler.compile(tiny(), cache_dir=tmp_path).path
    monkeypatch.setattr(runtime.model, "__version__", "99.0.0")
    with pytest.raises(LibraryError) as e:
        runtime.load(path)
    assert f"built by convc {runtime.__version__}, this is convc 99.0.0; recompile" in str(e.value)


def test_library_for_another_abi(tmp_path, monkeypatch):
    path = compiler.compile(tiny(), cache_dir=tmp_path).path
    built_for = runtime.model.ABI_VERSION
    monkeypatch.setattr(runtime.model, "ABI_VERSION", 99)
    with pytest.raises(LibraryError, match=f"ABI {built_for}, this runtime speaks ABI 99; recompile"):
        runtime.load(path)


def test_not_a_convc_library(tmp_path):
    libm = shutil.copyfile(next(p for p in (Path("/lib/x86_64-linux-gnu/libm.so.6"), Path("/usr/lib64/libm.so.6"),
                                            Path("/lib64/libm.so.6")) if p.exists()), tmp_path / "libm.so")
    with pytest.raises(LibraryError, match="no convc checksum .* not written by convc"):
        runtime.load(libm)
    stamped = tmp_path / "stamped-libm.so"  # intact and stamped, but not a model
    stamped.write_bytes(stamp(libm.read_bytes()))
    with pytest.raises(LibraryError, match="not a convc model"):
        runtime.load(stamped)


@pytest.mark.parametrize("content, message", [(b"", "the file is empty"),
                                              (b"\x7fELF garbage", "fewer than the 64-byte ELF header"),
                                              (b"#!/bin/sh\necho hi\n", "does not start with the ELF magic")])
def test_corrupt_library(tmp_path, content, message):
    (tmp_path / "bad.so").write_bytes(content)
    with pytest.raises(LibraryError, match=message):
        runtime.load(tmp_path / "bad.so")


def test_missing_library(tmp_path):
    with pytest.raises(LibraryError, match="no such compiled model"):
        runtime.load(tmp_path / "none.so")


def _absent_feature() -> tuple[str, str]:
    """(gcc flag, cpuinfo name) of an extension this CPU lacks and gcc 12 knows."""
    flags = cpu_flags()
    for flag, name in (("-mamx-tile", "amx_tile"), ("-mavx512fp16", "avx512_fp16"), ("-mavxvnni", "avx_vnni")):
        if flags is not None and name not in flags:
            return flag, name
    raise AssertionError(f"this CPU has every extension the test knows; add one (flags: {sorted(flags or [])})")


def test_library_for_a_cpu_feature_this_cpu_lacks(tmp_path):
    flag, name = _absent_feature()
    with pytest.raises(LibraryError) as e:
        compiler.compile(tiny(), cflags=[flag], cache_dir=tmp_path)
    msg = str(e.value)
    assert f"this CPU lacks: {name}" in msg and "march=None" in msg and "recompile on this machine" in msg
    # runtime.load of the same file (e.g. copied from another machine) refuses it the same way
    with pytest.raises(LibraryError, match=name):
        runtime.load(next(tmp_path.glob("*.so")))


def test_native_build_lists_the_features_it_uses_and_loads_here(tmp_path):
    model = compiler.compile(tiny(), cache_dir=tmp_path)
    required = runtime.model._ffi.string(model._lib.convc_required_isa).decode().split()
    flags = cpu_flags()
    if flags is not None and "avx2" in flags:
        assert "avx2" in required  # -march=native on an AVX2 machine must say so
    assert missing_features(required) == []
    portable = compiler.compile(tiny(), cache_dir=tmp_path, march=None)
    assert runtime.model._ffi.string(portable._lib.convc_required_isa) == b""
    x = random_input((1, 6, 6))
    np.testing.assert_allclose(portable(x), model(x), rtol=1e-5, atol=1e-6)


def test_missing_features_reads_the_list():
    assert missing_features(" avx2 fma", frozenset({"avx2"})) == ["fma"]
    assert missing_features("", frozenset()) == []


def test_build_warnings_are_kept_in_the_stamp(tmp_path):
    model = compiler.compile(tiny(), cache_dir=tmp_path)
    stamp = json.loads(model.path.with_suffix(".json").read_text())
    assert stamp["convc"] == runtime.__version__ and stamp["warnings"] == ""  # -Wall -Wextra clean


def _unaligned(shape) -> np.ndarray:
    raw = np.zeros(int(np.prod(shape)) * 4 + 1, np.uint8)
    x = raw[1:].view(np.float32).reshape(shape)
    assert not x.flags.aligned
    return x


@pytest.mark.parametrize("make, message", [
    (lambda: _unaligned((2, 1, 6, 6)), "aligned"),
    (lambda: np.zeros((2, 1, 6, 6), ">f4"), "float32"),
    (lambda: np.zeros((2, 1, 6, 6), np.float16), "float32"),
    (lambda: np.zeros((2, 1, 6, 6), np.complex64), "float32"),
    (lambda: np.zeros((2, 1, 6, 6), object), "float32"),
    (lambda: np.asfortranarray(np.zeros((2, 1, 6, 6), np.float32)), "C-contiguous"),
    (lambda: np.zeros((2, 1, 6, 6, 1), np.float32), "expected shape"),
    (lambda: np.float32(1.0), "numpy.ndarray"),
    (lambda: None, "numpy.ndarray"),
])
def test_call_checks_before_any_pointer_reaches_c(make, message):
    model = compiler.compile(tiny())
    with pytest.raises(ValueError, match=message):
        model(make())


def test_call_checks_arity_and_batch_agreement():
    model = compiler.compile(tiny())
    x = random_input((1, 6, 6))
    with pytest.raises(ValueError, match="takes 1 input"):
        model(x, x)
    with pytest.raises(ValueError, match="takes a dict"):
        model.run([x])
    # read-only inputs are fine (the library never writes them); any batch size >= 1 is supported
    x.setflags(write=False)
    for batch in (1, 5, 64):
        xb = random_input((1, 6, 6), batch=batch)
        np.testing.assert_array_equal(model(xb)[:1], model(xb[:1]))
    assert model(x).shape == (2, 2, 4, 4)


# The macros gcc defines for instruction-set extensions (SSE/SSE2 are the x86-64 baseline).
EXTENSION_MACRO = (r"__(AVX\w*|FMA4?|F16C|BMI2?|AMX_\w+|SSE3|SSSE3|SSE4\w*|POPCNT|LZCNT|MOVBE|ADX|GFNI|VAES|VPCLMULQDQ|"
                   r"PCLMUL|AES|SHA|XOP|TBM|ABM|LWP)__")


@pytest.mark.parametrize("march", ["native", "sapphirerapids", "znver3", "bdver4"])
def test_every_extension_a_build_can_assume_is_checked(march):
    """Each extension macro the compiler defines for this -march is in the list the library reports."""
    import re
    import subprocess
    from runtime.cpu import ISA_MACROS
    proc = subprocess.run(["cc", f"-march={march}", "-dM", "-E", "-x", "c", "/dev/null"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    defined = set(re.findall(EXTENSION_MACRO, proc.stdout))
    listed = {m.strip("_") for m, _ in ISA_MACROS}
    assert defined and defined <= listed, f"-march={march} defines {sorted(defined - listed)}, not in ISA_MACROS"


def test_private_library_folder_must_be_private(tmp_path, monkeypatch):
    """Pickled models land in a folder under /tmp; one that others can write is refused, not used."""
    import pickle
    import tempfile
    model = compiler.compile(tiny())
    data = pickle.dumps(model)
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    folder = tmp_path / f"convc-{os.getuid()}-models"
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    with pytest.raises(LibraryError, match="not a private folder"):
        pickle.loads(data)
    folder.chmod(0o700)
    x = random_input((1, 6, 6))
    np.testing.assert_array_equal(pickle.loads(data)(x), model(x))
