from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nsm
from nsm import _core
from tests.cases import examples, related_layers


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


@settings(max_examples=examples(40), deadline=None)
@given(st.lists(st.integers(1, 400), min_size=1, max_size=6), st.integers(0, 2**32 - 1))
def test_any_split_into_batches_gives_the_same_gram(sizes, seed):
    rng = np.random.default_rng(seed)
    X, Y = related_layers(rng, sum(sizes), 7, 5)
    g = nsm.Gram(7, 5)
    start = 0
    for size in sizes:
        g.update(X[start : start + size].astype(np.float32), Y[start : start + size])
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
                _core._testing.set_kernels(name)
            except ValueError:
                continue  # not compiled in, or this CPU lacks it
            assert _core.kernel_name() == name
            tried.append(name)
            np.testing.assert_allclose(
                nsm.Gram.from_arrays(X, Y, precision="float64").matrix, G, rtol=1e-11, atol=1e-9
            )
            t = nsm.match_thresholds(XR, YR)
            thresholds.append(np.concatenate([t.x, t.y]))
    finally:
        _core._testing.set_kernels("")
    for t in thresholds[1:]:  # the factorizations use the kernels too
        np.testing.assert_allclose(t, thresholds[0], atol=1e-9)
    assert "generic" in tried
    with pytest.raises(ValueError, match="not compiled"):
        _core._testing.set_kernels("sse1")


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


def test_core_reads_channels_first_activations_without_a_copy(rng):
    # (N, C, P) arrays count as N * P samples of C neurons: how nsm.torch passes conv outputs.
    A = rng.standard_normal((9, 5, 13)).astype(np.float32)
    B = rng.standard_normal((9, 4, 26))[:, :, ::2]  # strided positions
    rows = np.hstack([A.transpose(0, 2, 1).reshape(-1, 5), B.transpose(0, 2, 1).reshape(-1, 4)])
    g = _core.GramAccumulator(5, 4)
    g.update(A, B, 2)
    G = rows.astype(np.float64).T @ rows.astype(np.float64)
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


def test_save_load_keeps_the_precision(tmp_path, rng):
    # The measures' rank cutoff reads a Gram's precision; a saved mixed Gram loaded as float64.
    X, Y = rng.random((300, 4)).astype(np.float32), rng.random((300, 3)).astype(np.float32)
    for precision in ("mixed", "float64"):
        nsm.Gram.from_arrays(X, Y, precision=precision).save(tmp_path / "g.npz")
        assert nsm.Gram.load(tmp_path / "g.npz").precision == precision
    np.savez(tmp_path / "bad.npz", **{**np.load(tmp_path / "g.npz"), "precision": np.array("half")})
    with pytest.raises(ValueError, match="precision"):
        nsm.Gram.load(tmp_path / "bad.npz")


@pytest.mark.parametrize(
    "matrix, what",
    [
        ([[1, 2], [2, 1]], "cosine of 2"),  # |G_01| > sqrt(G_00 G_11)
        ([[1, 0.9, -0.9], [0.9, 1, 0.9], [-0.9, 0.9, 1]], "not positive semi-definite"),
        (
            [[1, 0.6, 0.6, -0.6], [0.6, 1, -0.6, 0.6], [0.6, -0.6, 1, 0.6], [-0.6, 0.6, 0.6, 1]],
            "not positive semi-definite",
        ),
        ([[0, 1e-3], [1e-3, 1]], "cosine of inf"),  # a zero vector has zero inner products
    ],
)
def test_impossible_grams_are_rejected(matrix, what):
    # [[1, 2], [2, 1]] used to report a perfect match at eps = 0.
    m = np.asarray(matrix, dtype=float)
    assert np.linalg.eigvalsh(m)[0] < -1e-4 or np.any(np.abs(m) > np.sqrt(np.outer(np.diag(m), np.diag(m))))
    with pytest.raises(ValueError, match=f"not a Gram matrix.*{what}|{what}"):
        nsm.Gram.from_matrix(m, 1, 10)


def test_grams_of_real_data_pass_the_check(rng):
    # Rank-deficient Grams, duplicated and zero neurons, and float32 rounding are Grams.
    X = rng.random((50, 6)).astype(np.float32)
    A = np.hstack([X, X[:, :2] * 3, np.zeros((50, 1)), X[:, :3] @ rng.random((3, 4))]).astype(np.float32)
    for G in (A.T.astype(np.float64) @ A, (A.T @ A).astype(np.float64)):
        g = nsm.Gram.from_matrix(G, 6, 50)
        assert g.n == 13
    few = rng.random((3, 40))  # 3 samples of 40 neurons: rank 3
    nsm.Gram.from_matrix(few.T @ few, 20, 3, column_sums=few.sum(axis=0))


def test_column_sums_must_fit_the_matrix():
    with pytest.raises(ValueError, match=r"column_sums\[1\] = 5 is impossible"):
        nsm.Gram.from_matrix(np.eye(2), 1, 4, column_sums=[0.0, 5.0])
    with pytest.raises(TypeError, match="column_sums must be real"):
        nsm.Gram.from_matrix(np.eye(2), 1, 4, column_sums=[0j, 1j])


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("n_x", 2.7, "n_x must be an integer"),
        ("n_samples", 1.9, "n_samples must be an integer"),
        ("n_samples", "400", "n_samples must be an integer"),
        ("n_samples", -3, "n_samples must be >= 0"),
        ("matrix", "complex", "matrix must be real"),
        ("column_sums", np.array([1.0, np.nan, 0.0, 0.0, 0.0]), "column_sums contains NaN"),
    ],
)
def test_load_rejects_malformed_fields(tmp_path, rng, field, value, message):
    # Gram.load truncated n_x = 2.7 to 2 and n_samples = 1.9 to 1, read "400" as a count and
    # dropped the imaginary part of a complex matrix.
    A = rng.random((30, 5))
    fields = {"matrix": A.T @ A, "column_sums": A.sum(axis=0), "n_x": np.int64(2), "n_samples": np.int64(30)}
    complex_matrix = isinstance(value, str) and value == "complex"
    fields[field] = fields["matrix"] * (1 + 1j) if complex_matrix else np.asarray(value)
    np.savez(tmp_path / "bad.npz", **fields)
    with pytest.raises((ValueError, TypeError), match=message):
        nsm.Gram.load(tmp_path / "bad.npz")


def test_load_of_other_files_says_what_it_expected(tmp_path, rng):
    np.save(tmp_path / "a.npy", np.eye(3))
    with pytest.raises(ValueError, match="not a saved nsm Gram .*: it holds a single array"):
        nsm.Gram.load(tmp_path / "a.npy")
    (tmp_path / "junk.npz").write_bytes(b"this is not a zip file at all")
    with pytest.raises(ValueError, match="is not a saved nsm Gram"):
        nsm.Gram.load(tmp_path / "junk.npz")
    g = nsm.Gram.from_arrays(rng.random((40, 3)), rng.random((40, 2)))
    g.save(tmp_path / "g.npz")
    data = (tmp_path / "g.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="nsm Gram"):
        nsm.Gram.load(tmp_path / "cut.npz")
    with pytest.raises(FileNotFoundError):
        nsm.Gram.load(tmp_path / "missing.npz")


@pytest.mark.parametrize("side", ["X", "Y"])
def test_overflowing_update_is_refused_and_leaves_the_gram(rng, side):
    # A value of 1e200 used to put inf in the Gram forever; save then wrote a file load refused.
    X, Y = rng.random((20, 3)), rng.random((20, 2))
    g = nsm.Gram.from_arrays(X, Y)
    before = g.matrix.copy()
    bad = (X if side == "X" else Y).copy()
    bad[4, 1] = 1e200
    args = (bad, Y) if side == "X" else (X, bad)
    with pytest.raises(
        ValueError,
        match=f"{side} holds values up to 1e\\+200: the Gram sums their squares, which overflow float64",
    ):
        g.update(*args)
    np.testing.assert_array_equal(g.matrix, before)
    assert g.n_samples == 20
    big = np.full((4, 3), 1e154)  # squares fit, their sum over the samples does not
    with pytest.raises(ValueError, match="X holds values up to 1e\\+154"):
        nsm.Gram(3, 2).update(big, np.ones((4, 2)))
    one = nsm.Gram.from_arrays(np.full((2, 3), 9e153), np.ones((2, 2)))  # diagonal 1.6e308
    other = nsm.Gram.from_arrays(np.full((2, 3), 9e153), np.full((2, 2), 2.0))  # other samples
    with pytest.raises(ValueError, match="merged Gram overflows float64"):
        one.merge(other)


def test_tiny_data_is_refused_not_called_dead(rng):
    # Data scaled by 1e-163 used to be reported as all dead.
    X, Y = rng.random((200, 4)), rng.random((200, 3))
    with pytest.raises(ValueError, match="Y holds values no larger than .*underflow float64"):
        nsm.max_match(X, Y * 1e-163, 0.1)
    small = 1e-120  # small but representable: same answer as unscaled
    a, b = nsm.max_match(X, Y, [0.3, 0.6]), nsm.max_match(X * small, Y * small, [0.3, 0.6])
    for r, s in zip(a, b):
        assert r.x.tolist() == s.x.tolist() and r.y.tolist() == s.y.tolist()
        assert len(s.dead_x) == len(s.dead_y) == 0
    # A tiny batch added to a Gram of ordinary values is harmless and accepted.
    g = nsm.Gram.from_arrays(X, Y).update(X[:5] * 1e-160, Y[:5])
    assert g.n_samples == 205


def test_a_shard_merged_twice_is_refused(tmp_path, rng):
    # Gram.merge and + summed the same shard twice without a word.
    X, Y = rng.random((50, 3)), rng.random((50, 2))
    a = nsm.Gram.from_arrays(X[:25], Y[:25])
    b = nsm.Gram.from_arrays(X[25:], Y[25:])
    with pytest.raises(ValueError, match="same samples"):
        a + a
    a.save(tmp_path / "shard.npz")
    with pytest.raises(ValueError, match="same samples"):
        a.merge(nsm.Gram.load(tmp_path / "shard.npz"))
    np.testing.assert_allclose((a + b).matrix, nsm.Gram.from_arrays(X, Y).matrix, rtol=1e-12)
    assert (nsm.Gram(3, 2) + nsm.Gram(3, 2)).n_samples == 0  # empty Grams hold no samples to repeat


def test_a_member_declaring_more_than_it_holds_is_refused_before_allocating(tmp_path):
    # A 3 MiB file whose header declared 3 GiB made nsm allocate it before failing.
    import io
    import zipfile

    path = tmp_path / "g.npz"
    nsm.Gram.from_arrays(np.ones((5, 2)), np.ones((5, 1))).save(path)
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (20000, 20000)}
    )
    members["matrix.npy"] = header.getvalue() + b"\0" * 64
    with zipfile.ZipFile(path, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    with pytest.raises(ValueError, match="declares .* but holds"):
        nsm.Gram.load(path)
