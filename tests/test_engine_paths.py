"""The engine's inner promises, tested directly through private hooks of the core: a downdate
gives the factor a rebuild gives, a rolled-back trial restores the factor bit for bit, and every
path of the kernels and of the peeling runs (counters say which ran)."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

import nsm
from nsm import _core
from tests.cases import related_layers
from tests.oracle import ratios_against


@contextlib.contextmanager
def engine_paths(refactor: str = "automatic", parallel_sweeps: bool = False):
    _core._testing.set_engine_paths(refactor, parallel_sweeps)
    _core._testing.reset_engine_counters()
    try:
        yield
    finally:
        _core._testing.set_engine_paths("automatic", False)


def engine(X: np.ndarray, Y: np.ndarray, num_threads: int = 2):
    g = nsm.Gram.from_arrays(X, Y)
    return _core.MatchEngine(g.matrix, g.n_x, g.n_samples, 1e-20, 0.0, num_threads)


def layers_with_dependencies(rng, d=600, n_x=40, n_y=36):
    """Related layers where some neurons are exact combinations of others on their side (so
    the factors hold dependent members, which removals promote into the basis)."""
    X, Y = related_layers(rng, d, n_x, n_y, shared=8)
    X[:, 5] = X[:, 0] + X[:, 1]
    X[:, 9] = 2 * X[:, 2]
    Y[:, 3] = Y[:, 0] + Y[:, 2]
    return X, Y


def oracle_ratios(X, Y, alive):
    """Each live neuron's ratio against the other layer's live neurons, by SVD."""
    n_x = X.shape[1]
    ax, ay = alive[:n_x], alive[n_x:]
    r = np.full(alive.size, np.nan)
    r[:n_x][ax] = ratios_against(X[:, ax], Y[:, ay])
    r[n_x:][ay] = ratios_against(Y[:, ay], X[:, ax])
    return r


def peel_in_batches(e, batches):
    """Remove the batches one after another; the ratios after each."""
    p = _core._testing.Peeler(e)
    out = []
    for batch in batches:
        p.remove(batch)
        out.append(p.ratios())
    return out


def removal_batches(n_x, n):
    # Early X members (deep in X's factor: long sweeps), the dependencies' parents (promotions),
    # a mix of both layers, and a Y neuron alone.
    return [[0, 2], [1, n_x + 0, n_x + 5], [3, 4, n_x + 2, n_x + 7], [n - 1]]


def test_a_downdate_equals_a_rebuild_and_the_oracle(rng):
    X, Y = layers_with_dependencies(rng)
    e = engine(X, Y)
    n_x, n = X.shape[1], X.shape[1] + Y.shape[1]
    batches = removal_batches(n_x, n)
    with engine_paths("downdate"):
        by_downdates = peel_in_batches(e, batches)
        counted = _core._testing.engine_counters()
    assert counted["downdates"] > 0 and counted["promotions"] > 0
    assert counted["rebuilds"] == 3  # the initial factors only
    with engine_paths("rebuild"):
        by_rebuilds = peel_in_batches(e, batches)
        counted = _core._testing.engine_counters()
    assert counted["downdates"] == 0 and counted["rebuilds"] > 3
    alive = np.ones(n, dtype=bool)
    for batch, a, b in zip(batches, by_downdates, by_rebuilds):
        alive[batch] = False
        np.testing.assert_array_equal(np.isnan(a), ~alive)
        np.testing.assert_allclose(a[alive], b[alive], atol=1e-10)
        np.testing.assert_allclose(a[alive], oracle_ratios(X, Y, alive)[alive], atol=1e-8)


def snapshot(p):
    return [p.factor(0), p.factor(1), p.ratios()]


def assert_same_bits(a, b):
    for fa, fb in zip(a[:2], b[:2]):
        assert fa[0] == fb[0] and fa[1] == fb[1]  # basis order, tracked neurons
        assert fa[2].tobytes() == fb[2].tobytes()  # W, bit for bit
        assert fa[3].tobytes() == fb[3].tobytes()  # residuals
    assert a[2].tobytes() == b[2].tobytes()  # ratios (NaN for neurons out)


@pytest.mark.parametrize("parallel_sweeps", [False, True])
def test_a_rolled_back_trial_restores_the_factor_bit_for_bit(rng, parallel_sweeps):
    X, Y = layers_with_dependencies(rng)
    e = engine(X, Y)
    n_x, n = X.shape[1], X.shape[1] + Y.shape[1]
    with engine_paths("automatic", parallel_sweeps):
        p = _core._testing.Peeler(e)
        p.remove([7, n_x + 11])  # a state that is not a fresh factor
        before = snapshot(p)
        p.begin_trial()
        for batch in removal_batches(n_x, n):
            p.remove(batch)
        assert not np.array_equal(np.isnan(p.ratios()), np.isnan(before[2]))
        p.rollback_trial()
        assert_same_bits(snapshot(p), before)
        counted = _core._testing.engine_counters()
        assert counted["rollbacks"] == 2  # one per layer
        assert counted["promotions"] > 0
        assert (counted["parallel_sweeps"] > 0) == parallel_sweeps
        # A kept trial equals the same removals made outside any trial.
        p.begin_trial()
        p.remove([0, 2])
        p.commit_trial()
        q = _core._testing.Peeler(e)
        q.remove([7, n_x + 11])
        q.remove([0, 2])
        np.testing.assert_allclose(p.ratios(), q.ratios(), atol=1e-12)


def test_the_parallel_sweep_runs_by_itself_and_equals_a_rebuild(rng):
    # More than 512 tracked neurons and a long sweep: the size at which threads share the
    # rotations without any switch.
    X, Y = related_layers(rng, 2400, 420, 400, shared=40)
    e = engine(X, Y)
    with engine_paths("downdate"):
        p = _core._testing.Peeler(e)
        first = p.factor(0)[0][0]  # removing the first basis member rotates every row below it
        p.remove([first])
        got = p.ratios()
        assert _core._testing.engine_counters()["parallel_sweeps"] == 1
    with engine_paths("rebuild"):
        q = _core._testing.Peeler(e)
        q.remove([first])
        np.testing.assert_allclose(got, q.ratios(), atol=1e-10, equal_nan=True)


@pytest.mark.parametrize("kernels", ["generic", "best"])
def test_factors_over_several_panels_reproduce_the_cosines(rng, kernels):
    # More than three 64-column panels of the pivoted Cholesky, with dependent members so that
    # it stops inside a later panel: every finished panel's rows are permuted at the end.
    X, Y = related_layers(rng, 500, 170, 150, shared=20)
    X = np.hstack([X, X[:, :40] @ np.round(rng.random((40, 60)) * 4)])  # 230 neurons, rank 170
    Y = np.hstack([Y, 2 * Y[:, :25]])  # 175 neurons, rank 150
    A = np.hstack([X, Y])
    unit = A / np.linalg.norm(A, axis=0)
    cosine = unit.T @ unit
    n_x = X.shape[1]
    try:
        _core._testing.set_kernels("" if kernels == "best" else kernels)
        p = _core._testing.Peeler(engine(X, Y))
        for side, layer in ((0, slice(None, n_x)), (1, slice(n_x, None))):
            basis, tracked, W, residuals = p.factor(side)
            tracked = np.asarray(tracked)
            assert len(basis) == np.linalg.matrix_rank(A[:, layer])
            members = np.isin(tracked, np.arange(A.shape[1])[layer])
            # Inner products with the span's members survive the projection onto the span.
            np.testing.assert_allclose(
                W[:, members].T @ W, cosine[np.ix_(tracked[members], tracked)], atol=1e-9
            )
            np.testing.assert_allclose(residuals, 1 - (W**2).sum(axis=0), atol=1e-12)
        np.testing.assert_allclose(p.ratios(), oracle_ratios(X, Y, np.ones(A.shape[1], bool)), atol=1e-8)
    finally:
        _core._testing.set_kernels("")


def test_every_refactoring_path_gives_the_same_thresholds(rng):
    X, Y = layers_with_dependencies(rng, d=800, n_x=60, n_y=50)
    results = {}
    for refactor in ("automatic", "downdate", "rebuild"):
        for parallel_sweeps in (False, True):
            with engine_paths(refactor, parallel_sweeps):
                t = nsm.match_thresholds(X, Y)
                results[refactor, parallel_sweeps] = np.concatenate([t.x, t.y])
                counted = _core._testing.engine_counters()
            if refactor == "downdate":
                assert counted["downdates"] > 0
            if refactor == "rebuild":
                assert counted["downdates"] == 0
            if parallel_sweeps and refactor != "rebuild":
                assert counted["parallel_sweeps"] > 0
    reference = results["automatic", False]
    for key, t in results.items():
        np.testing.assert_allclose(t, reference, atol=1e-9, err_msg=str(key))


@pytest.mark.parametrize("n_x, n_y, threads", [(40, 30, 1), (40, 30, 2), (150, 140, 2), (300, 20, 2)])
def test_every_gram_kernel_path(rng, n_x, n_y, threads):
    # One thread; threads over samples (n < 128 x threads); strips of output rows (n >= 128 x
    # threads).
    X = rng.standard_normal((1500, n_x)).astype(np.float32)
    Y = rng.standard_normal((1500, n_y)).astype(np.float32)
    A = np.hstack([X, Y]).astype(np.float64)
    tried = []
    try:
        for name in ("generic", "avx2", "avx512"):
            try:
                _core._testing.set_kernels(name)
            except ValueError:
                continue
            tried.append(name)
            full = _core.GramAccumulator(n_x, n_y)
            full.update(X, Y, threads)
            np.testing.assert_allclose(full.matrix(), A.T @ A, rtol=1e-12, atol=1e-9)
            # The mixed pass's kernel (float32 products of each block) on the same paths.
            scale = np.sqrt(np.outer(np.diag(A.T @ A), np.diag(A.T @ A)))
            mixed = _core.GramAccumulator(n_x, n_y)
            mixed.update(X, Y, threads, "mixed")
            block = np.tril_indices(n_x + n_y)
            error = np.abs(mixed.matrix() - A.T @ A)[block] / scale[block]
            assert error.max() < 1e-5
    finally:
        _core._testing.set_kernels("")
    assert "generic" in tried


def test_the_private_switch_rejects_an_unknown_path():
    with pytest.raises(ValueError, match="refactor must be"):
        _core._testing.set_engine_paths("sometimes")
