"""The compiled-library cache stays under its cap: least-recently-used eviction, safe while other processes
compile and load, and `convc cache info|prune|clear`."""
import json
import multiprocessing
import os
import pickle

import numpy as np
import pytest

import compiler
import runtime
from compiler.cli import main
from conftest import model_dict, random_input
from runtime import cache

PROCESSES, MODELS_PER_PROCESS = 3, 4
SHAPE = (2, 6, 6)


def desc(seed: int, name: str = "bounded") -> dict:
    """The same small architecture with other weights: one cache entry per seed, all of about one size."""
    return model_dict([{"name": "c", "op": "conv2d", "filters": 3, "kernel": 3}, {"op": "relu"}], shape=SHAPE,
                      name=name, seed=seed)


def entry_bytes(folder) -> int:
    return max(e.bytes for e in cache.usage(folder).entries)


def check(model, seed: int, name: str = "bounded") -> None:
    x = random_input(SHAPE, seed=seed)
    ref = compiler.interpret(compiler.load(desc(seed, name)), {"x": x})
    np.testing.assert_allclose(model(x), ref[model.output_names[0]], rtol=1e-4, atol=1e-5)


def _compile_many(index, folder, cap, barrier, queue):
    """Compile this process's models into the shared cache, keep them all loaded, then check every one."""
    seeds = [100 * index + k for k in range(MODELS_PER_PROCESS)]
    barrier.wait()
    models, evicted, hits = {}, 0, 0
    for k, seed in enumerate(seeds):
        models[seed] = compiler.compile(desc(seed), cache_dir=folder, cache_max_bytes=cap)
        evicted += models[seed].build_info.evicted
        again = compiler.compile(desc(seeds[0]), cache_dir=folder, cache_max_bytes=cap)  # maybe evicted by now
        hits += again.build_info.cache_hit
        evicted += again.build_info.evicted
    barrier.wait()  # every process has compiled everything: most libraries are gone from the cache
    for seed, model in models.items():
        check(model, seed)  # the pages of an evicted library are still the library's
    saved = models[seeds[0]].save(folder.parent / f"saved-{index}.so")
    check(runtime.load(saved), seeds[0])
    check(pickle.loads(pickle.dumps(models[seeds[1]])), seeds[1])
    queue.put({"evicted": evicted, "hits": hits, "gone": sum(not m.path.exists() for m in models.values())})


def test_processes_compile_and_load_while_the_cache_evicts(tmp_path):
    folder = tmp_path / "cache"
    compiler.compile(desc(0), cache_dir=folder)
    one = entry_bytes(folder)
    cache.clear(folder)
    cap = int(3.5 * one)  # room for three libraries: most of the twelve are evicted
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(PROCESSES), ctx.Queue()
    procs = [ctx.Process(target=_compile_many, args=(i, folder, cap, barrier, queue)) for i in range(PROCESSES)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    evictions = sum(r["evicted"] for r in results)
    compiles = PROCESSES * MODELS_PER_PROCESS * 2
    print(f"{PROCESSES} processes x {compiles // PROCESSES} compiles, {evictions} evictions, "
          f"{sum(r['hits'] for r in results)} hits, {sum(r['gone'] for r in results)} loaded models evicted")
    assert evictions >= PROCESSES * MODELS_PER_PROCESS - 4, results
    assert sum(r["gone"] for r in results) > 0, results  # some checked models had really been evicted
    # each build prunes after itself, keeping what it built; one prune may skip while another runs
    assert cache.usage(folder).total_bytes <= cap + PROCESSES * one
    cache.prune(folder, cap)
    assert cache.usage(folder).total_bytes <= cap


def test_eviction_is_least_recently_used(tmp_path):
    folder = tmp_path / "c"
    models = {seed: compiler.compile(desc(seed), cache_dir=folder) for seed in (1, 2, 3)}
    one = entry_bytes(folder)
    paths = {seed: m.path for seed, m in models.items()}
    t = 1_000_000_000
    for seed in (1, 2, 3):  # used in order 1, 2, 3
        os.utime(paths[seed].with_suffix(".json"), (t + seed, t + seed))
    assert compiler.compile(desc(1), cache_dir=folder).build_info.cache_hit  # now 1 is the most recent
    newest = compiler.compile(desc(4), cache_dir=folder, cache_max_bytes=int(3.5 * one))
    assert newest.build_info.evicted == 1
    assert not paths[2].exists() and paths[1].exists() and paths[3].exists() and newest.path.exists()


def test_cap_from_the_environment_and_the_argument(tmp_path, monkeypatch):
    folder = tmp_path / "c"
    compiler.compile(desc(1), cache_dir=folder)
    one = entry_bytes(folder)
    monkeypatch.setenv(cache.MAX_BYTES_VARIABLE, str(int(1.5 * one)))
    assert compiler.compile(desc(2), cache_dir=folder).build_info.evicted == 1
    assert len(cache.usage(folder).entries) == 1
    assert compiler.compile(desc(3), cache_dir=folder, cache_max_bytes="1G").build_info.evicted == 0
    monkeypatch.setenv(cache.MAX_BYTES_VARIABLE, "lots")
    with pytest.raises(ValueError, match="CONVC_CACHE_MAX_BYTES"):
        compiler.compile(desc(4), cache_dir=folder)
    assert cache.parse_size("2G") == 2 * 1024 ** 3 == cache.DEFAULT_MAX_BYTES
    assert cache.parse_size("1.5 KiB") == 1536 and cache.parse_size(10) == 10


def test_an_entry_being_opened_is_not_evicted(tmp_path):
    folder = tmp_path / "c"
    model = compiler.compile(desc(1), cache_dir=folder)
    key = model.build_info.key
    with cache.entry_lock(folder, key, shared=True):  # what a process holds from checking to opening
        assert cache.prune(folder, 0) == [] and model.path.exists()
    assert [e.key for e in cache.prune(folder, 0)] == [key] and not model.path.exists()
    check(model, 1)  # still loaded and right; save and pickle read the open file
    check(runtime.load(model.save(tmp_path / "m.so")), 1)
    check(pickle.loads(pickle.dumps(model)), 1)
    again = compiler.compile(desc(1), cache_dir=folder)
    assert not again.build_info.cache_hit and again.path == model.path


def test_cli_cache_info_prune_clear(tmp_path, capsys):
    folder = tmp_path / "c"
    for seed in (1, 2, 3):
        compiler.compile(desc(seed), cache_dir=folder)
    one = entry_bytes(folder)
    assert main(["cache", "info", "--cache-dir", str(folder)]) == 0
    assert f"{folder}: 3 libraries" in capsys.readouterr().out
    assert main(["cache", "prune", "--max-size", str(int(1.5 * one)), "--cache-dir", str(folder)]) == 0
    assert "evicted 2 least recently used" in capsys.readouterr().out
    assert len(cache.usage(folder).entries) == 1
    assert main(["cache", "clear", "--cache-dir", str(folder)]) == 0
    assert "removed 1 libraries" in capsys.readouterr().out
    assert cache.usage(folder).entries == [] and not list(folder.glob("*.so"))
    assert main(["cache", "prune", "--max-size", "much", "--cache-dir", str(folder)]) == 2
    assert "expected a byte count" in capsys.readouterr().err


def test_build_record_says_how_it_was_built(tmp_path):
    model = compiler.compile(desc(1), cache_dir=tmp_path)
    record = json.loads(model.path.with_suffix(".json").read_text())
    assert record["convc"] == runtime.__version__ and "-shared" in record["flags"]
