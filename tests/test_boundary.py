"""Bad input gets a clear exception naming the argument; nothing the caller passed changes."""

from __future__ import annotations

import numpy as np
import pytest

import nsm


@pytest.fixture
def layers(rng):
    return rng.random((50, 4)), rng.random((50, 3))


def test_different_sample_counts(layers):
    X, Y = layers
    with pytest.raises(ValueError, match="X has 50 samples but Y has 49"):
        nsm.max_match(X, Y[:49], 0.1)


@pytest.mark.parametrize("shape", [(50,), (50, 4, 1), ()])
def test_not_2d(layers, shape):
    X, Y = layers
    bad = np.zeros(shape)
    with pytest.raises(ValueError, match=r"X must be 2-D \(n_samples, n_neurons\), got shape"):
        nsm.max_match(bad, Y, 0.1)
    with pytest.raises(ValueError, match="Y must be 2-D"):
        nsm.ratios(X, bad)


def test_no_neurons_and_no_samples(layers):
    X, Y = layers
    with pytest.raises(ValueError, match=r"Y has no neurons \(shape \(50, 0\)\)"):
        nsm.max_match(X, Y[:, :0], 0.1)
    with pytest.raises(ValueError, match=r"X has no samples \(shape \(0, 4\)\)"):
        nsm.max_match(X[:0], Y[:0], 0.1)
    with pytest.raises(ValueError, match="gram has no samples"):
        nsm.max_match(nsm.Gram(4, 3), 0.1)
    with pytest.raises(ValueError, match="n_x must be >= 1"):
        nsm.Gram(0, 3)
    with pytest.raises(TypeError, match="n_y must be an int"):
        nsm.Gram(2, 3.0)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_inf_names_the_array(layers, value):
    X, Y = layers
    Xb, Yb = X.copy(), Y.copy()
    Xb[7, 2] = value
    with pytest.raises(ValueError, match=r"X contains NaN or Inf \(first at row 7, column 2\)"):
        nsm.max_match(Xb, Y, 0.1)
    Yb[0, 0] = value
    with pytest.raises(ValueError, match="Y contains NaN or Inf"):
        nsm.ratios(X, Yb.astype(np.float32))


@pytest.mark.parametrize("eps", [-0.1, 1.5, np.nan, np.inf, [0.1, 2.0]])
def test_eps_out_of_range(layers, eps):
    with pytest.raises(ValueError, match=r"eps must be finite and in \[0, 1\]"):
        nsm.max_match(*layers, eps)


@pytest.mark.parametrize("eps", ["0.1", True, [[0.1]], {"a": 1}])
def test_eps_wrong_type(layers, eps):
    with pytest.raises(TypeError, match="eps must be"):
        nsm.max_match(*layers, eps)
    thresholds = nsm.match_thresholds(*layers)  # accepted strings while max_match refused them
    with pytest.raises(TypeError, match="eps must be"):
        thresholds.similarity(eps)


def test_eps_none_is_a_missing_eps(layers):
    with pytest.raises(TypeError, match=r"max_match\(\) takes \(X, Y, eps\) or \(gram, eps\)"):
        nsm.max_match(*layers, None)


def test_empty_eps_sequence(layers):
    with pytest.raises(ValueError, match="eps is an empty sequence"):
        nsm.max_match(*layers, [])


def test_numpy_scalar_eps_gives_one_result(layers):
    assert isinstance(nsm.max_match(*layers, np.float32(0.5)), nsm.MatchResult)
    assert isinstance(nsm.max_match(*layers, np.array([0.5])), list)


@pytest.mark.parametrize("dtype", [np.complex128, object, "U3", "datetime64[s]"])
def test_non_numeric_dtypes(layers, dtype):
    X, Y = layers
    bad = X.astype(dtype) if dtype is not object else X.astype(object)
    with pytest.raises(TypeError, match="X must"):
        nsm.max_match(bad, Y, 0.1)


def test_wrong_argument_counts(layers):
    X, Y = layers
    with pytest.raises(TypeError, match=r"max_match\(\) takes \(X, Y, eps\) or \(gram, eps\)"):
        nsm.max_match(X, Y)
    g = nsm.Gram.from_arrays(X, Y)
    with pytest.raises(TypeError, match="max_match"):
        nsm.max_match(g)
    with pytest.raises(TypeError, match="ratios"):
        nsm.ratios(g, 0.1)
    with pytest.raises(TypeError, match="ratios"):
        nsm.ratios(X)


@pytest.mark.parametrize("bad", [-1.0, 1.0, np.nan, "x"])
def test_dead_tol(layers, bad):
    with pytest.raises((ValueError, TypeError), match="dead_tol"):
        nsm.max_match(*layers, 0.1, dead_tol=bad)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_num_threads(layers, bad):
    with pytest.raises((ValueError, TypeError), match="num_threads"):
        nsm.max_match(*layers, 0.1, num_threads=bad)


def test_update_shape_mismatch():
    g = nsm.Gram(4, 3)
    with pytest.raises(ValueError, match="X has 5 neurons but this Gram's layer X has 4"):
        g.update(np.ones((10, 5)), np.ones((10, 3)))
    with pytest.raises(ValueError, match="Y has 2 neurons but this Gram's layer Y has 3"):
        g.update(np.ones((10, 4)), np.ones((10, 2)))


def test_from_matrix_checks():
    with pytest.raises(ValueError, match="matrix must be square"):
        nsm.Gram.from_matrix(np.ones((3, 4)), 1, 10)
    with pytest.raises(ValueError, match="n_x must be less than"):
        nsm.Gram.from_matrix(np.eye(3), 3, 10)
    with pytest.raises(ValueError, match="NaN or Inf"):
        nsm.Gram.from_matrix(np.full((3, 3), np.nan), 1, 10)
    with pytest.raises(ValueError, match="column_sums must have shape"):
        nsm.Gram.from_matrix(np.eye(3), 1, 10, column_sums=np.ones(2))
    with pytest.raises(ValueError, match="negative diagonal entry at 1"):
        nsm.Gram.from_matrix(np.diag([1.0, -1.0, 1.0]), 1, 10)


def test_few_samples_warns(rng):
    X, Y = rng.random((4, 4)), rng.random((4, 4))  # each layer spans all of R^4
    with pytest.warns(nsm.FewSamplesWarning, match="4 samples for 4 \\+ 4 neurons"):
        m = nsm.max_match(X, Y, 0.01)
    assert m.similarity == 1.0  # the degenerate case the warning is about
    assert issubclass(nsm.FewSamplesWarning, UserWarning)


def test_one_neuron_layers(rng):
    z = rng.random((40, 1))
    m = nsm.max_match(z, 3 * z, 0.0)
    assert m.x.tolist() == [0] and m.y.tolist() == [0]
    m = nsm.max_match(z, rng.random((40, 1)), 0.01)
    assert len(m.x) == 0 and len(m.y) == 0


def test_inputs_are_not_modified(rng):
    X = rng.random((60, 5)).astype(np.float32)
    Y = np.asfortranarray(rng.random((60, 4)))
    Y[:, 1] = 0.0
    X0, Y0 = X.copy(), Y.copy()
    nsm.max_match(X, Y, [0.2, 0.6])
    nsm.ratios(X, Y)
    nsm.Gram(5, 4).update(X, Y)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(Y, Y0)
    assert X.flags.writeable and Y.flags.writeable


@pytest.mark.parametrize("value", ["no", 0, 1, None])
def test_flags_must_be_bools(layers, value):
    # count_dead="no" used to be taken as True.
    with pytest.raises(TypeError, match="count_dead must be True or False"):
        nsm.max_match(*layers, 0.1, count_dead=value)
    with pytest.raises(TypeError, match="count_dead must be True or False"):
        nsm.match_thresholds(*layers, count_dead=value)
    assert nsm.max_match(*layers, 0.1, count_dead=np.bool_(False)).count_dead is False


@pytest.mark.parametrize("eps", [10**400, [0.1, 10**400], -(10**400)])
def test_huge_eps_names_eps(layers, eps):
    # 10**400 raised OverflowError without naming eps.
    with pytest.raises(ValueError, match=r"eps must be finite and in \[0, 1\]"):
        nsm.max_match(*layers, eps)


@pytest.mark.parametrize("seed, error", [("abc", TypeError), (1.5, TypeError), (-1, ValueError)])
def test_seed_is_checked(layers, seed, error):
    with pytest.raises(error, match="seed must be"):
        nsm.minimal_match(*layers, 0.5, ("x", 0), order="random", seed=seed)
    with pytest.raises(error, match="seed must be"):
        nsm.simple_matches(*layers, 0.5, order="random", seed=seed, progress=False)


def test_struct_field_views_are_read(rng):
    # A field of a structured array has strides that are not whole items: it was rejected.
    rec = np.zeros(300, dtype=[("x", "f8", (4,)), ("flag", "i1"), ("y", "f4", (3,))])
    rec["x"] = rng.random((300, 4))
    rec["y"] = rng.random((300, 3))
    X, Y = rec["x"], rec["y"]
    assert X.strides[0] % 8 != 0
    A = np.hstack([np.array(X), np.array(Y, dtype=np.float64)])
    np.testing.assert_allclose(nsm.Gram.from_arrays(X, Y).matrix, A.T @ A, rtol=1e-12)
    np.testing.assert_array_equal(nsm.max_match(X, Y, 0.5).x, nsm.max_match(np.array(X), np.array(Y), 0.5).x)


def test_gram_form_and_keywords(layers):
    g = nsm.Gram.from_arrays(*layers)
    a = nsm.max_match(g, 0.4)
    for r in (nsm.max_match(g, eps=0.4), nsm.max_match(*layers, eps=0.4)):
        assert r.x.tolist() == a.x.tolist() and r.y.tolist() == a.y.tolist()
    m = nsm.minimal_match(g, 0.9, ("x", 0))
    for r in (
        nsm.minimal_match(g, 0.9, neuron=("x", 0)),
        nsm.minimal_match(g, eps=0.9, neuron=("x", 0)),
        nsm.minimal_match(*layers, 0.9, ("x", 0)),
    ):
        assert r.x.tolist() == m.x.tolist() and r.y.tolist() == m.y.tolist()
    with pytest.raises(TypeError, match=r"got a Gram and 2 more arguments"):
        nsm.max_match(g, 0.1, 0.2)
    usage = r"minimal_match\(\) takes \(X, Y, eps, neuron\) or \(gram, eps, neuron\)"
    with pytest.raises(TypeError, match=usage):
        nsm.minimal_match(g, 0.1)


def test_public_signatures_are_explicit():
    import inspect

    for f in (nsm.max_match, nsm.ratios, nsm.match_thresholds, nsm.minimal_match, nsm.simple_matches):
        params = inspect.signature(f).parameters
        assert not any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params.values()), f
        assert list(params)[:2] == ["X", "Y"] and "num_threads" in params
    assert nsm.Comparison.__module__ == "nsm.results.comparison" and "LayerComparison" in nsm.__all__


def test_few_samples_warning_says_what_is_true(rng):
    # It said "every neuron lies in the other layer's span and the similarity is trivially 1"
    # for X 10x2 and Y 10x9, where the similarity at eps = 0.1 is 0.
    X, Y = rng.random((10, 2)), rng.random((10, 9))
    with pytest.warns(nsm.FewSamplesWarning) as record:
        m = nsm.max_match(X, Y, 0.1)
    assert m.similarity == 0.0
    text = str(record[0].message)
    assert "trivially" not in text and "every neuron lies" not in text
    assert "10 samples for 2 + 9 neurons" in text and "inflated" in text
