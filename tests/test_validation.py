"""nsm._validation: the one module of user-facing checks (its examples run, its rules hold)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import nsm
from nsm import _validation as validation


def test_docstring_examples():
    result = doctest.testmod(validation, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


def test_one_eps_rule_everywhere(rng):
    # The eps range used to be checked in five places; every entry point now says the same.
    X, Y = rng.random((40, 3)), rng.random((40, 2))
    t = nsm.match_thresholds(X, Y)
    calls = [
        lambda e: nsm.max_match(X, Y, e),
        lambda e: t.similarity(e),
        lambda e: t.max_match(e),
        lambda e: nsm.minimal_match(X, Y, e, ("x", 0)),
        lambda e: nsm.simple_matches(X, Y, e, progress=False),
    ]
    for call in calls:
        for bad in (1.5, -0.1, float("nan"), 10**400):
            with pytest.raises(ValueError, match=r"eps must be finite and in \[0, 1\]"):
                call(bad)


def test_dead_tol_rule():
    assert validation.check_dead_tol(None) == validation.DEFAULT_DEAD_TOL
    assert validation.check_dead_tol(0) == 0.0
    for bad in (1.0, 2.0, -1e-30, float("inf")):
        with pytest.raises(ValueError, match=r"dead_tol must be in \[0, 1\)"):
            validation.check_dead_tol(bad)


def test_counts_refuse_floats_and_strings():
    assert validation.check_count(np.int64(5), "n_samples") == 5
    assert validation.check_count(np.array(7), "n_samples") == 7
    for bad in (2.0, 1.9, "400", True):
        with pytest.raises(TypeError, match="n_samples must be an int"):
            validation.check_count(bad, "n_samples")


def test_gram_check_accepts_rounding_and_refuses_indefinite(rng):
    A = rng.random((20, 30))  # 20 samples of 30 neurons: rank 20, eigenvalues at rounding level
    G = A.T @ A
    assert np.linalg.eigvalsh(G)[0] < 0  # rounding makes the exact zeros slightly negative
    np.testing.assert_array_equal(validation.check_gram_matrix(G), np.tril(G))
    bad = G.copy()
    bad[0, 1] = bad[1, 0] = -np.sqrt(G[0, 0] * G[1, 1]) * 0.9999  # a cosine allowed alone ...
    bad[0, 2] = bad[2, 0] = np.sqrt(G[0, 0] * G[2, 2]) * 0.9999
    bad[1, 2] = bad[2, 1] = np.sqrt(G[1, 1] * G[2, 2]) * 0.9999  # ... but not all three together
    with pytest.raises(ValueError, match="not positive semi-definite"):
        validation.check_gram_matrix(bad)


def test_gram_assembled_from_a_difference_passes(rng):
    # A Gram of the last 200 samples obtained as (all, streamed) - (first 200), nsm.torch's
    # baseline way: neuron 2 is zero on those samples, so its row holds only rounding (here a
    # squared norm of -3e-13 and cosines of 0/0).
    A = rng.random((400, 6)) * 3
    A[200:, 2] = 0.0
    G = sum(A[k : k + 100].T @ A[k : k + 100] for k in range(0, 400, 100)) - A[:200].T @ A[:200]
    assert G[2, 2] < 0
    g = nsm.Gram.from_matrix(G, 3, 200)
    m = nsm.max_match(g, 0.5)
    assert 2 in m.dead_x and 2 not in m.x
