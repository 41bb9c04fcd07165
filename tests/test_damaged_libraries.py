"""runtime.load checks a library before dlopen maps it: truncated, bit-flipped, empty, unstamped files,
directories and FIFOs give a LibraryError naming the file and what is wrong, never a crash.

Every damaged file is loaded in one child process (LOADER), so a SIGBUS or SIGSEGV would
show as the child's exit status instead of killing the test run.
"""
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from elftools.elf.elffile import ELFFile

import compiler
import runtime
from conftest import ROOT, model_dict, random_input
from runtime.elf import STAMP, stamp

LOADER = """
import json, sys
import runtime
results = []
for path in sys.argv[1:]:
    print(path, file=sys.stderr, flush=True)  # the last line names the case that crashed, if one does
    try:
        runtime.load(path)
        results.append([path, "loaded", ""])
    except runtime.LibraryError as e:
        results.append([path, "LibraryError", str(e)])
    except Exception as e:
        results.append([path, type(e).__name__, str(e)])
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lib")
    model = compiler.compile(model_dict([{"name": "c", "op": "conv2d", "filters": 3, "kernel": 3}, {"op": "relu"}],
                                        shape=(2, 7, 7), name="damaged"))
    path = model.save(folder / "good.so")
    return path, path.read_bytes()


def elf_ranges(data_path):
    """(program header table range, .text range) of the library, read with pyelftools."""
    with open(data_path, "rb") as f:
        elf = ELFFile(f)
        h = elf.header
        text = elf.get_section_by_name(".text")
        return (h.e_phoff, h.e_phoff + h.e_phnum * h.e_phentsize), (text["sh_offset"], text["sh_offset"] + text["sh_size"])


def load_in_child(paths, timeout=120):
    proc = subprocess.run([sys.executable, "-c", LOADER, *map(str, paths)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    last = proc.stderr.strip().splitlines()[-1:] if proc.stderr else []
    assert proc.returncode == 0, f"the loader died (status {proc.returncode}) on {last}: {proc.stderr[-2000:]}"
    return {path: (outcome, message) for path, outcome, message in json.loads(proc.stdout)}


def write_cases(folder, cases: dict[str, bytes]):
    paths = []
    for name, data in cases.items():
        path = folder / f"{name}.so"
        path.write_bytes(data)
        paths.append(path)
    return paths


def assert_refused(results, paths, why: str):
    for path in paths:
        outcome, message = results[str(path)]
        assert outcome == "LibraryError", (path.name, outcome, message)
        assert str(path) in message, message  # names the file
        assert why in message if why else True, (path.name, message)


def test_an_intact_library_loads_and_runs(library, tmp_path):
    path, data = library
    assert data[-STAMP.size:].startswith(b"convc-sha256")  # compile stamped it, save kept the stamp
    results = load_in_child([path])
    assert results[str(path)][0] == "loaded"


def test_every_truncation_is_refused(library, tmp_path):
    path, data = library
    (phdr_start, phdr_end), _ = elf_ranges(path)
    step = max(1, len(data) // 200)
    cuts = sorted(set(range(0, len(data), step)) | {1, 3, 4, 5, 63, 64, 65, phdr_end - 1, len(data) - STAMP.size,
                                                    len(data) - STAMP.size + 1, len(data) - 1})
    paths = write_cases(tmp_path, {f"cut{c}": data[:c] for c in cuts})
    results = load_in_child(paths)
    assert_refused(results, paths, "")
    # the message says what is wrong, by what was cut
    assert "empty" in results[str(tmp_path / "cut0.so")][1]
    assert "ELF header" in results[str(tmp_path / "cut5.so")][1]
    assert "program header table" in results[str(tmp_path / f"cut{phdr_end - 1}.so")][1]
    middle = min((c for c in cuts if c > phdr_end + 1024), key=lambda c: abs(c - len(data) // 2))
    assert "truncated" in results[str(tmp_path / f"cut{middle}.so")][1]
    assert "checksum" in results[str(tmp_path / f"cut{len(data) - 1}.so")][1]
    print(f"{len(paths)} truncations refused")


def test_bit_flips_in_header_program_headers_code_and_stamp_are_refused(library, tmp_path):
    path, data = library
    (phdr_start, phdr_end), (text_start, text_end) = elf_ranges(path)
    positions = {"header": range(0, 64),
                 "phdr": range(phdr_start, phdr_end, 3),
                 "code": range(text_start, text_end, max(1, (text_end - text_start) // 60)),
                 "stamp": range(len(data) - STAMP.size, len(data), 2)}
    cases = {}
    for region, where in positions.items():
        for i, pos in enumerate(where):
            flipped = bytearray(data)
            flipped[pos] ^= 1 << (i % 8)
            cases[f"{region}{pos}_{i % 8}"] = bytes(flipped)
    paths = write_cases(tmp_path, cases)
    results = load_in_child(paths)
    assert_refused(results, paths, "")
    code_messages = [results[str(p)][1] for p in paths if p.name.startswith("code")]
    assert all("checksum" in m for m in code_messages), code_messages[:3]
    print(f"{len(paths)} bit flips refused")


def test_empty_directory_fifo_unstamped_and_not_elf(library, tmp_path):
    path, data = library
    (tmp_path / "empty.so").write_bytes(b"")
    (tmp_path / "folder.so").mkdir()
    os.mkfifo(tmp_path / "fifo.so")  # opening it for reading would block without O_NONBLOCK
    (tmp_path / "unstamped.so").write_bytes(data[:-STAMP.size])
    (tmp_path / "text.so").write_bytes(b"#!/bin/sh\necho not a library\n" * 10)
    (tmp_path / "stamped-twice.so").write_bytes(data + data[-STAMP.size:])
    why = {"empty": "empty", "folder": "directory", "fifo": "FIFO", "unstamped": "no convc checksum",
           "text": "ELF magic", "stamped-twice": "checksum"}
    paths = [tmp_path / f"{name}.so" for name in why]
    results = load_in_child(paths, timeout=60)
    for p in paths:
        outcome, message = results[str(p)]
        assert outcome == "LibraryError" and str(p) in message and why[p.stem] in message, (p.name, message)
    missing = tmp_path / "missing.so"
    with pytest.raises(runtime.LibraryError, match="no such compiled model"):
        runtime.load(missing)


def test_unpickled_models_get_the_same_checks(library):
    path, data = library
    model = runtime.load(path)
    blob = pickle.dumps(model)
    x = random_input((2, 7, 7))
    np.testing.assert_array_equal(pickle.loads(blob)(x), model(x))
    for damaged in (data[: len(data) // 2], data[:100], b"", data[:200] + bytes([data[200] ^ 4]) + data[201:]):
        with pytest.raises(runtime.LibraryError, match="unpickled model"):
            pickle.loads(pickle.dumps(PickledLibrary(damaged)))


class PickledLibrary:
    """Pickles as a Model whose library bytes are `data` (what a damaged pickle carries)."""

    def __init__(self, data: bytes):
        self.data = data

    def __reduce__(self):
        return runtime.model._from_bytes, (self.data,)


def test_stamp_is_idempotent_and_save_keeps_it(library, tmp_path):
    path, data = library
    assert stamp(data) == data and stamp(data[:-STAMP.size]) == data
    again = runtime.load(path).save(tmp_path / "copy.so")
    assert again.read_bytes() == data
