from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nsm
from nsm import _core

from conftest import related_layers


def reference(X, Y):
    A = np.hstack([np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)])
    return A.T @ A, A.sum(axis=0)


def test_from_arrays_equals_numpy(rng):
    X, Y = rng.standard_normal((1000, 17)), rng.standard_normal((1000, 9))
    g = nsm.Gram.from_arrays(X, Y)
    G, s = reference(X, Y)
    np.testing.assert_allclose(g.matrix, G, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(g.column_sums, s, rtol=1e-12, atol=1e-9)
    assert (g.n_x, g.n_y, g.n, g.n_samples) == (17, 9, 26, 1000)
    assert np.array_equal(g.matrix, g.matrix.T)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int32, np.uint8, bool])
def test_dtypes(rng, dtype):
    X = (rng.random((300, 5)) * 4).astype(dtype)
    Y = (rng.random((300, 3)) * 4).astype(dtype)
    G, _ = reference(X, Y)
    np.testing.assert_allclose(nsm.Gram.from_arrays(X, Y, precision="float64").matrix, G, rtol=1e-12)


@pytest.mark.parametrize("layout", ["F", "strided", "negative", "transposed_view", "big_endian"])
def test_layouts_read_in_place(rng, layout):
    base_x = rng.standard_normal((50, 12))
    base_y = rng.standard_normal((50, 8))
    if layout == "F":
        X, Y = np.asfortranarray(base_x), np.asfortranarray(base_y)
    elif layout == "strided":
        X, Y = base_x[::2, ::3], base_y[::2, 1::2]
    elif layout == "negative":
        X, Y = base_x[::-1, ::-1], base_y[::-1]
    elif layout == "transposed_view":
        X, Y = base_x.T.copy().T, base_y.T.copy().T
    else:
        X, Y = base_x.astype(">f8"), base_y.astype(">f4")
    G, _ = reference(X, Y)
    np.testing.assert_allclose(nsm.Gram.from_arrays(X, Y).matrix, G, rtol=1e-12, atol=1e-10)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 400), min_size=1, max_size=6), st.integers(0, 2**32 - 1))
def test_any_split_into_batches_gives_the_same_gram(sizes, seed):
    rng = np.random.default_rng(seed)
    X, Y = related_layers(rng, sum(sizes), 7, 5)
    g = nsm.Gram(7, 5)
    start = 0
    for size in sizes:
        g.update(X[start:start + size].astype(np.float32), Y[start:start + size])
        start += size
    whole = nsm.Gram.from_arrays(X.astype(np.float32), Y)
    np.testing.assert_allclose(g.matrix, whole.matrix, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(g.column_sums, whole.column_sums, rtol=1e-12, atol=1e-9)
    assert g.n_samples == whole.n_samples == sum(sizes)


def test_merge_and_add(rng):
    X, Y = rng.random((200, 4)), rng.random((200, 6))
    a = nsm.Gram.from_arrays(X[:80], Y[:80])
    b = nsm.Gram.from_arrays(X[80:], Y[80:])
    both = a + b
    np.testing.assert_allclose(both.matrix, nsm.Gram.from_arrays(X, Y).matrix, rtol=1e-12)
    assert both.n_samples == 200 and a.n_samples == 80  # merge makes a new Gram
    with pytest.raises(ValueError, match=r"cannot merge a Gram of layers \(4, 6\) with one of \(4, 5\)"):
        a.merge(nsm.Gram(4, 5))
    with pytest.raises(TypeError):
        a.merge(np.eye(10))


def test_from_matrix_round_trip(rng):
    X, Y = rng.random((300, 4)), rng.random((300, 3))
    g = nsm.Gram.from_arrays(X, Y)
    h = nsm.Gram.from_matrix(g.matrix, n_x=4, n_samples=300, column_sums=g.column_sums)
    np.testing.assert_array_equal(h.matrix, g.matrix)
    m1, m2 = nsm.max_match(g, 0.3), nsm.max_match(h, 0.3)
    assert m1.x.tolist() == m2.x.tolist() and m1.y.tolist() == m2.y.tolist()


def test_matrix_is_read_only(rng):
    g = nsm.Gram.from_arrays(rng.random((20, 2)), rng.random((20, 2)))
    with pytest.raises(ValueError):
        g.matrix[0, 0] = 1.0


def test_bad_batch_leaves_gram_unchanged(rng):
    X, Y = rng.random((100, 3)), rng.random((100, 2))
    g = nsm.Gram.from_arrays(X, Y)
    before = g.matrix.copy()
    bad = Y.copy()
    bad[57, 1] = np.nan
    with pytest.raises(ValueError, match=r"Y contains NaN or Inf \(first at row 57, column 1\)"):
        g.update(X, bad)
    badi = (X * 10).astype(np.float16)
    badi[3, 0] = np.inf
    with pytest.raises(ValueError, match="X contains NaN or Inf"):
        g.update(badi, Y)
    np.testing.assert_array_equal(g.matrix, before)
    assert g.n_samples == 100


def test_every_compiled_kernel_agrees(rng):
    X = rng.standard_normal((3000, 300)).astype(np.float32)
    Y = rng.standard_normal((3000, 200)).astype(np.float32)
    G, _ = reference(X, Y)
    XR, YR = related_layers(rng, 2000, 150, 140, shared=30, noise=0.5)
    tried, thresholds = [], []
    try:
        for name in ("generic", "avx2", "avx512"):
            try:
                _core.set_kernels(name)
            except ValueError:
                continue  # not compiled in, or this CPU lacks it
            assert _core.kernel_name() == name
            tried.append(name)
            np.testing.assert_allclose(nsm.Gram.from_arrays(X, Y, precision="float64").matrix, G,
                                       rtol=1e-11, atol=1e-9)
            t = nsm.match_thresholds(XR, YR)
            thresholds.append(np.concatenate([t.x, t.y]))
    finally:
        _core.set_kernels("")
    for t in thresholds[1:]:  # the factorizations use the kernels too
        np.testing.assert_allclose(t, thresholds[0], atol=1e-9)
    assert "generic" in tried
    with pytest.raises(ValueError, match="not compiled"):
        _core.set_kernels("sse1")


@pytest.mark.parametrize("n_x, n_y", [(300, 100), (20, 12)])  # strips of neurons / of samples
def test_one_and_two_threads_give_the_same_gram(rng, n_x, n_y):
    X, Y = rng.random((5000, n_x)), rng.random((5000, n_y)).astype(np.float32)
    one = nsm.Gram.from_arrays(X, Y, num_threads=1)
    two = nsm.Gram.from_arrays(X, Y, num_threads=2)
    np.testing.assert_allclose(one.matrix, two.matrix, rtol=1e-14)
    np.testing.assert_allclose(one.column_sums, two.column_sums, rtol=1e-14)
    again = nsm.Gram.from_arrays(X, Y, num_threads=2)  # deterministic, not just close
    np.testing.assert_array_equal(again.matrix, two.matrix)
    np.testing.assert_array_equal(again.column_sums, two.column_sums)


def test_repr():
    assert repr(nsm.Gram(3, 4)) == "Gram(n_x=3, n_y=4, n_samples=0)"


@pytest.mark.parametrize("cross_only", [False, True])
def test_core_reads_channels_first_activations_without_a_copy(rng, cross_only):
    # (N, C, P) arrays count as N * P samples of C neurons: how nsm.torch passes conv outputs.
    A = rng.standard_normal((9, 5, 13)).astype(np.float32)
    B = rng.standard_normal((9, 4, 26))[:, :, ::2]  # strided positions
    rows = np.hstack([A.transpose(0, 2, 1).reshape(-1, 5), B.transpose(0, 2, 1).reshape(-1, 4)])
    g = _core.GramAccumulator(5, 4)
    g.update(A, B, 2, cross_only=cross_only)
    G = rows.astype(np.float64).T @ rows.astype(np.float64)
    if cross_only:
        np.testing.assert_allclose(g.matrix()[5:, :5], G[5:, :5], rtol=1e-12, atol=1e-12)
        assert g.n_samples == 0
    else:
        np.testing.assert_allclose(g.matrix(), G, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(g.column_sums(), rows.sum(axis=0), rtol=1e-12, atol=1e-12)
        assert g.n_samples == 9 * 13
    bad = A.copy()
    bad[2, 3, 7] = np.inf
    with pytest.raises(ValueError, match=r"X contains NaN or Inf \(first at row 33, column 3\)"):
        g.update(bad, B, 2)


def test_save_load_round_trip(tmp_path, rng):
    g = nsm.Gram.from_arrays(rng.random((300, 4)), rng.random((300, 3)))
    g.save(tmp_path / "g.npz")
    h = nsm.Gram.load(tmp_path / "g.npz")
    np.testing.assert_array_equal(h.matrix, g.matrix)
    np.testing.assert_array_equal(h.column_sums, g.column_sums)
    assert (h.n_x, h.n_y, h.n_samples) == (4, 3, 300)
    np.savez(tmp_path / "other.npz", matrix=np.eye(3))
    with pytest.raises(ValueError, match="not a saved nsm Gram"):
        nsm.Gram.load(tmp_path / "other.npz")
