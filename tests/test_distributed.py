"""Scoring a dataset across processes: a compiled runtime.Model pickles (library bytes + metadata) and
gives bitwise the same results in other processes, with multiprocessing and with a Dask cluster."""
import multiprocessing
import pickle

import numpy as np
import pytest

import compiler
import runtime
from conftest import EXAMPLES

SAMPLES = 4000


@pytest.fixture(scope="module")
def lenet():
    model = compiler.compile(EXAMPLES / "lenet5.yaml")
    x = np.random.default_rng(7).standard_normal((SAMPLES, 1, 28, 28)).astype(np.float32)
    return model, x, model(x)


def score(model: runtime.Model, x: np.ndarray) -> np.ndarray:
    # Arrays deserialized from network frames can be unaligned; the model takes only aligned C arrays.
    return model(np.require(x, np.float32, ["C_CONTIGUOUS", "ALIGNED"]))


def test_pickle_round_trip_keeps_the_library_and_metadata(lenet):
    model, x, want = lenet
    again = pickle.loads(pickle.dumps(model))
    assert again.path != model.path  # re-created from the bytes, not from the cache path
    assert again.metadata == model.metadata and again.input_shapes == model.input_shapes
    np.testing.assert_array_equal(again(x[:64]), want[:64])


def test_multiprocessing_pool(lenet):
    model, x, want = lenet
    chunks = np.array_split(x, 8)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        parts = pool.starmap(score, [(model, c) for c in chunks])
    np.testing.assert_array_equal(np.concatenate(parts), want)


@pytest.mark.filterwarnings("ignore:Sending large graph:UserWarning")
def test_dask_local_cluster(lenet):
    distributed = pytest.importorskip("distributed")
    da = pytest.importorskip("dask.array")
    model, x, want = lenet
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                                  silence_logs=50) as cluster, distributed.Client(cluster) as client:
        remote = client.scatter(model, broadcast=True)  # the library bytes travel once per worker
        futures = client.map(score, [remote] * 8, np.array_split(x, 8))
        by_map = np.concatenate(client.gather(futures))
        pids = set(client.run(lambda: __import__("os").getpid()).values())
        blocks = da.from_array(x, chunks=(500, 1, 28, 28))
        by_blocks = blocks.map_blocks(lambda b: score(model, b), dtype=np.float32, chunks=(500, 10),
                                      drop_axis=[2, 3]).compute()
    assert len(pids) == 2
    np.testing.assert_array_equal(by_map, want)
    np.testing.assert_array_equal(by_blocks, want)
