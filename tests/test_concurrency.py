"""Threads sharing one model, processes sharing one cache, and a cache that someone tampered with."""
import multiprocessing
import os
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

import compiler
from runtime.build import build_library, compile_flags
from conftest import EXAMPLES, model_dict, random_input

THREADS, CALLS = 4, 48
PROCESSES = 4


def test_threads_calling_one_model_match_serial_calls():
    model = compiler.compile(EXAMPLES / "lenet5.yaml")  # uses the per-call arena between layers
    assert model.arena_floats > 0
    shape = model.input_shapes["image"]
    inputs = [random_input(shape, batch=1 + i % 3, seed=i) for i in range(CALLS)]
    serial = [model(x) for x in inputs]
    with ThreadPoolExecutor(THREADS) as pool:
        parallel = list(pool.map(model, inputs))
    for i, (a, b) in enumerate(zip(serial, parallel)):
        assert np.array_equal(a, b), f"call {i} differs when run on {THREADS} threads"


def test_a_call_releases_the_gil():
    """While one thread is inside the C call, another Python thread keeps running."""
    desc = model_dict([{"op": "conv2d", "filters": 32, "kernel": 3, "padding": 1},
                       {"op": "conv2d", "filters": 32, "kernel": 3, "padding": 1}], shape=(32, 48, 48))
    model = compiler.compile(desc)
    batch, seconds = 1, 0.0
    while seconds < 0.4 and batch < 4096:  # make one call last long enough to see
        batch *= 2
        x = random_input((32, 48, 48), batch=batch)
        start = time.perf_counter()
        model(x)
        seconds = time.perf_counter() - start
    done = threading.Event()
    window: list[float] = []

    def call():
        window.append(time.perf_counter())
        model(x)
        window.append(time.perf_counter())
        done.set()

    beats: list[float] = []
    worker = threading.Thread(target=call)
    worker.start()
    while not done.is_set():
        beats.append(time.perf_counter())
        time.sleep(0.001)
    worker.join()
    start, end = window
    inside = [t for t in beats if start < t < end]
    # Holding the GIL for the whole call would leave no beat inside it.
    assert len(inside) >= 10, f"{len(inside)} beats of the main thread during a {end - start:.2f} s call"


def _compile_in_process(desc, cache_dir, barrier, queue):
    barrier.wait()  # start all compiles at the same moment
    model = compiler.compile(desc, cache_dir=cache_dir)
    y = model(random_input((3, 10, 10), batch=2, seed=1))
    queue.put((str(model.path), model.build_info.cache_hit, y.tobytes()))


def test_processes_compiling_one_model_into_one_cache(tmp_path):
    desc = model_dict([{"op": "conv2d", "filters": 8, "kernel": 3}, {"op": "relu"}, {"op": "flatten"},
                       {"op": "dense", "units": 5}], shape=(3, 10, 10), name="shared")
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(PROCESSES), ctx.Queue()
    procs = [ctx.Process(target=_compile_in_process, args=(desc, tmp_path, barrier, queue))
             for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    paths = {r[0] for r in results}
    assert len(paths) == 1, paths
    assert sorted(hit for _, hit, _ in results) == [False] + [True] * (PROCESSES - 1)  # built once, under the lock
    assert len({r[2] for r in results}) == 1
    # Nothing half-written left behind, and the library is the one the stamp describes.
    assert not list(tmp_path.glob("build-*")) and not list(tmp_path.glob("*.tmp"))
    again = compiler.compile(desc, cache_dir=tmp_path)
    assert again.build_info.cache_hit and str(again.path) in paths
    ref = compiler.interpret(compiler.load(desc), {"x": random_input((3, 10, 10), batch=2, seed=1)})
    np.testing.assert_allclose(np.frombuffer(results[0][2], np.float32).reshape(2, 5), ref["dense_4"],
                               rtol=1e-4, atol=1e-5)


DIGEST_ALL_EXAMPLES = """
import hashlib, sys, warnings
sys.path.insert(0, "tests")
import compiler
from test_golden_ops import CASES
from conftest import EXAMPLES
warnings.simplefilter("ignore")
h = hashlib.sha256()
for desc in [c.description() for c in CASES] + sorted(EXAMPLES.glob("*.yaml")):
    src = compiler.generate_c(compiler.load(desc))
    h.update(src.code.encode())
    for name in sorted(src.files):
        h.update(src.files[name])
print(h.hexdigest())
"""


def test_generated_c_is_the_same_in_every_process():
    """Processes differ in their hash seed; the C (and so the cache key) must not."""
    import subprocess
    import sys
    from conftest import ROOT
    digests = {subprocess.run([sys.executable, "-c", DIGEST_ALL_EXAMPLES], capture_output=True, text=True, cwd=ROOT,
                              check=True, env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout
               for seed in (1, 2)}
    assert len(digests) == 1


def _built(tmp_path):
    graph = compiler.load(model_dict([{"op": "conv2d", "filters": 2, "kernel": 3}], shape=(1, 6, 6)))
    source = compiler.generate_c(graph)
    result = build_library(source.code, source.files, flags=compile_flags(), cache_dir=tmp_path)
    return graph, result.path


def _damage_truncate(lib: Path):
    lib.write_bytes(lib.read_bytes()[: lib.stat().st_size // 2])


def _damage_flip_byte(lib: Path):
    data = bytearray(lib.read_bytes())
    data[len(data) // 2] ^= 0xFF
    lib.write_bytes(bytes(data))


def _damage_empty(lib: Path):
    lib.write_bytes(b"")


def _damage_stamp_removed(lib: Path):
    lib.with_suffix(".json").unlink()


def _damage_stamp_garbage(lib: Path):
    lib.with_suffix(".json").write_text("{not json")


def test_damaged_cache_entries_are_detected_and_rebuilt(tmp_path):
    for damage in (_damage_truncate, _damage_flip_byte, _damage_empty, _damage_stamp_removed,
                   _damage_stamp_garbage):
        cache = tmp_path / damage.__name__
        graph, lib = _built(cache)  # built but never loaded in this process
        good = lib.read_bytes()
        damage(lib)
        model = compiler.compile(graph, cache_dir=cache)
        assert not model.build_info.cache_hit, damage.__name__
        assert model.path == lib and lib.read_bytes() == good, damage.__name__
        x = random_input((1, 6, 6))
        np.testing.assert_allclose(model(x), compiler.interpret(graph, {"x": x})["conv2d_1"], rtol=1e-4, atol=1e-5)


def test_leftovers_of_a_killed_build_do_not_block_the_next(tmp_path):
    """A build killed mid-way leaves its lock file and maybe a temp folder; neither blocks or corrupts."""
    cc = tmp_path / "slow-cc"
    cc.write_text(f'#!/bin/sh\nif [ -f "{tmp_path}/slow" ]; then touch "{tmp_path}/started"; sleep 20; fi\n'
                  'exec gcc "$@"\n')
    cc.chmod(cc.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "slow").touch()
    desc = model_dict([{"op": "relu"}], shape=(2, 4, 4), name="killed")
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=compiler.compile, args=(desc,), kwargs={"cc": str(cc), "cache_dir": tmp_path / "c"})
    proc.start()
    deadline = time.monotonic() + 120
    while not (tmp_path / "started").exists():
        assert time.monotonic() < deadline and proc.is_alive(), "the compile never reached the compiler"
        time.sleep(0.05)
    os.kill(proc.pid, 9)  # the process we started, killed while its compiler runs
    proc.join()
    (tmp_path / "slow").unlink()
    assert not list((tmp_path / "c").glob("*.so"))
    model = compiler.compile(desc, cc=str(cc), cache_dir=tmp_path / "c")
    assert not model.build_info.cache_hit
    x = random_input((2, 4, 4))
    np.testing.assert_array_equal(model(x), np.maximum(x, 0))


def test_saving_over_a_loaded_library_does_not_disturb_it(tmp_path):
    """Model.save writes a new file and renames it, so a process using the old file keeps working."""
    first = compiler.compile(model_dict([{"op": "relu"}], shape=(2, 4, 4)))
    second = compiler.compile(model_dict([{"op": "tanh"}], shape=(2, 4, 4)))
    target = first.save(tmp_path / "m.so")
    import runtime
    loaded = runtime.load(target)
    inode = target.stat().st_ino
    second.save(target)  # in place, this would truncate pages `loaded` has mapped
    assert target.stat().st_ino != inode
    x = random_input((2, 4, 4))
    np.testing.assert_array_equal(loaded(x), np.maximum(x, 0))
    assert not list(tmp_path.glob(".*.tmp"))


def test_loading_a_replaced_library_gets_the_new_one(tmp_path):
    """dlopen reuses a handle by path; a library replaced on disk must still load as itself."""
    import runtime
    relu = compiler.compile(model_dict([{"op": "relu"}], shape=(2, 4, 4)))
    tanh = compiler.compile(model_dict([{"op": "tanh"}], shape=(2, 4, 4)))
    target = tmp_path / "m.so"
    x = random_input((2, 4, 4))
    relu.save(target)
    np.testing.assert_array_equal(runtime.load(target)(x), np.maximum(x, 0))
    tanh.save(target)
    again = runtime.load(target)
    assert again.output_names == ["tanh_1"]
    np.testing.assert_allclose(again(x), np.tanh(x), rtol=1e-5, atol=1e-6)


def test_threads_compiling_one_model_build_it_once(tmp_path):
    """The per-key lock is an flock on a file each build opens itself, so threads exclude each other too."""
    desc = model_dict([{"op": "conv2d", "filters": 4, "kernel": 3}, {"op": "sigmoid"}], shape=(2, 7, 7),
                      name="threads")
    barrier = threading.Barrier(THREADS)

    def build(_):
        barrier.wait()
        return compiler.compile(desc, cache_dir=tmp_path)

    with ThreadPoolExecutor(THREADS) as pool:
        models = list(pool.map(build, range(THREADS)))
    assert len({m.path for m in models}) == 1
    assert sorted(m.build_info.cache_hit for m in models) == [False] + [True] * (THREADS - 1)
    x = random_input((2, 7, 7))
    for m in models:
        np.testing.assert_array_equal(m(x), models[0](x))
