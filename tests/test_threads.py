"""Threads: the num_threads rule, one Gram updated from several threads, fork after use."""

from __future__ import annotations

import multiprocessing
import pickle
import threading

import numpy as np
import pytest

import nsm


@pytest.mark.parametrize("threads", [20_000, 100_000, 2**31, 2**64])
def test_num_threads_above_the_cores_is_capped(rng, threads):
    # Used to segfault (100,000), abort inside libgomp (50,000), take 30 s (20,000) or dump a
    # pybind11 signature (2**31).
    X, Y = rng.random((300, 4)), rng.random((300, 3))
    expected = nsm.Gram.from_arrays(X, Y, num_threads=1).matrix
    np.testing.assert_allclose(nsm.Gram.from_arrays(X, Y, num_threads=threads).matrix, expected, rtol=1e-13)
    g = nsm.Gram(4, 3).update(X, Y, num_threads=threads)
    np.testing.assert_allclose(g.matrix, expected, rtol=1e-13)
    one = nsm.match_thresholds(X, Y, num_threads=1)
    many = nsm.match_thresholds(X, Y, num_threads=threads)
    np.testing.assert_allclose(many.x, one.x, atol=1e-9)
    assert (
        nsm.max_match(X, Y, 0.5, num_threads=threads).x.tolist()
        == nsm.max_match(X, Y, 0.5, num_threads=1).x.tolist()
    )
    assert len(nsm.simple_matches(X, Y, 0.9, progress=False, num_threads=threads)) >= 0


@pytest.fixture
def default_engine_threads():
    """The engine's default neurons per thread (the suite lowers it: tests/conftest.py)."""
    from nsm import _core

    lowered = _core._testing.engine_neurons_per_thread()
    _core._testing.set_engine_neurons_per_thread(1024)
    yield _core
    _core._testing.set_engine_neurons_per_thread(lowered)


def test_the_engine_gives_each_thread_1024_neurons(default_engine_threads, rng):
    # Two threads on 256 + 256 neurons took 4 to 5 times one thread's time (the engine's
    # short OpenMP regions): the engine now takes a thread per 1,024 neurons, up to num_threads.
    _core = default_engine_threads
    for n, requested in [(2, 2), (512, 2), (2047, 2), (2048, 2), (4096, 2), (8192, 16), (8192, 3)]:
        assert _core.engine_threads(n, requested) == min(max(n // 1024, 1), requested)
    with pytest.raises(ValueError, match="neurons per thread must be >= 1"):
        _core._testing.set_engine_neurons_per_thread(0)
    # Same thresholds whichever count the rule picks (here 1 thread against 2 forced).
    X = np.maximum(rng.standard_normal((3000, 300)), 0)
    Y = np.maximum(X @ rng.standard_normal((300, 300)) + rng.standard_normal((3000, 300)), 0)
    by_rule = nsm.match_thresholds(X, Y, num_threads=2)
    _core._testing.set_engine_neurons_per_thread(1)
    forced = nsm.match_thresholds(X, Y, num_threads=2)
    np.testing.assert_allclose(by_rule.x, forced.x, atol=1e-9)
    np.testing.assert_allclose(by_rule.y, forced.y, atol=1e-9)


def test_the_rule_is_one_function():
    from nsm.validation import check_threads, default_threads

    assert check_threads(None) == default_threads()
    assert check_threads(10**9) == default_threads()
    assert check_threads(1) == 1
    with pytest.raises(ValueError, match="num_threads must be >= 1"):
        check_threads(0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_arrays_that_went_through_pickle(rng, dtype):
    X = rng.random((200, 5)).astype(dtype)
    Y = rng.random((200, 4)).astype(dtype)
    Xp, Yp = pickle.loads(pickle.dumps(X)), pickle.loads(pickle.dumps(Y))
    assert Xp.dtype == X.dtype and Xp.dtype is not X.dtype
    np.testing.assert_array_equal(nsm.Gram.from_arrays(Xp, Yp).matrix, nsm.Gram.from_arrays(X, Y).matrix)
    assert nsm.max_match(Xp, Yp, 0.1).similarity == nsm.max_match(X, Y, 0.1).similarity


def _serial_gram(batches, n_x, n_y):
    g = nsm.Gram(n_x, n_y)
    for X, Y in batches:
        g.update(X, Y, num_threads=1)
    return g


def test_updates_from_threads_equal_serial_updates(rng):
    # Like boost-histogram's test_threaded_fill: four threads update one Gram (the core
    # releases the GIL); the result equals the same updates made one after another.
    n_x, n_y = 120, 80
    batches = [(rng.random((2000, n_x)), rng.random((2000, n_y)).astype(np.float32)) for _ in range(16)]
    serial = _serial_gram(batches, n_x, n_y)
    for _ in range(8):  # the lost updates of an unlocked core showed up in about 1 run in 3
        shared = nsm.Gram(n_x, n_y)
        threads = [
            threading.Thread(
                target=lambda part, g=shared: [g.update(X, Y, num_threads=1) for X, Y in part],
                args=(batches[k::4],),
            )
            for k in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert shared.n_samples == serial.n_samples
        np.testing.assert_allclose(shared.matrix, serial.matrix, rtol=1e-12)
        np.testing.assert_allclose(shared.column_sums, serial.column_sums, rtol=1e-12)


def test_readers_during_updates_see_whole_updates(rng, tmp_path):
    # merge, matrix and save while updates run: every snapshot is the Gram after some number
    # of whole updates (n_samples says how many), never a half-added batch.
    n_x, n_y = 30, 20
    batches = [(rng.random((4000, n_x)), rng.random((4000, n_y))) for _ in range(12)]
    prefixes = {0: np.zeros((n_x + n_y, n_x + n_y))}
    acc = nsm.Gram(n_x, n_y)
    for k, (X, Y) in enumerate(batches, 1):
        prefixes[k * 4000] = acc.update(X, Y, num_threads=1).matrix.copy()
    shared = nsm.Gram(n_x, n_y)
    writer = threading.Thread(target=lambda: [shared.update(X, Y, num_threads=1) for X, Y in batches])
    seen = []
    writer.start()
    k = 0
    while writer.is_alive() or k == 0:
        merged = shared.merge(nsm.Gram(n_x, n_y))
        seen.append((merged.n_samples, merged.matrix))
        path = tmp_path / f"g{k}.npz"
        shared.save(path)
        loaded = nsm.Gram.load(path)
        seen.append((loaded.n_samples, loaded.matrix))
        k += 1
    writer.join()
    seen.append((shared.n_samples, shared.matrix))
    for n_samples, matrix in seen:
        np.testing.assert_allclose(matrix, prefixes[n_samples], rtol=1e-12, atol=1e-9)
    assert seen[-1][0] == 12 * 4000


def _shard_gram(seed: int) -> list:
    rng = np.random.default_rng(seed)
    X, Y = rng.random((5000, 50)), rng.random((5000, 30))
    g = nsm.Gram.from_arrays(X, Y, num_threads=2)
    return [g.matrix.tolist(), nsm.max_match(g, 0.5, num_threads=2).x.tolist()]


# Python >= 3.12 warns that forking a multi-threaded process may deadlock: that is the point.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_forked_children_compute_after_the_parent_used_threads():
    # libgomp's thread pool does not survive fork(): a forked child used to hang at its first
    # parallel region once the parent had run nsm with two or more threads.
    _shard_gram(0)
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        pending = pool.map_async(_shard_gram, [1, 2, 3])
        results = pending.get(timeout=60)
    for seed, (matrix, matched) in zip([1, 2, 3], results):
        expected = _shard_gram(seed)
        np.testing.assert_allclose(matrix, expected[0], rtol=1e-12)
        assert matched == expected[1]
