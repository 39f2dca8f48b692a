"""The mixed-precision Gram pass (float32 products over blocks of rows, added into the float64
Gram): the bound the documentation states against the float64 pass on realistic and hard
layers, float64 input kept in float64, and the argument's checks."""

from __future__ import annotations

import numpy as np
import pytest

import nsm
from nsm import _core

REALISTIC_BOUND, HARD_BOUND = 1e-5, 1e-3


def relu_layers(rng, d=4000, n=64):
    """Two float32 post-ReLU layers sharing half their latent features."""
    shared = rng.standard_normal((d, 16), dtype=np.float32)
    out = []
    for _ in range(2):
        own = rng.standard_normal((d, 16), dtype=np.float32)
        z = np.hstack([shared, own]) @ rng.standard_normal((32, n), dtype=np.float32)
        z += 0.3 * rng.standard_normal((d, n), dtype=np.float32)
        out.append(np.maximum(z, 0) + np.float32(0.1) * rng.random((d, n), dtype=np.float32))
    return out


def near_duplicates(rng):
    X, Y = relu_layers(rng)
    Y[:, :32] = X[:, :32] * (1 + 1e-3 * rng.standard_normal((X.shape[0], 32), dtype=np.float32))
    X[:, 40:48] = X[:, :8] * (1 + 1e-3 * rng.standard_normal((X.shape[0], 8), dtype=np.float32))
    return X, Y


def scales(rng):
    X, Y = relu_layers(rng)
    return (
        X * np.logspace(-3, 3, 64, dtype=np.float32)[rng.permutation(64)],
        Y * np.logspace(-3, 3, 64, dtype=np.float32)[rng.permutation(64)],
    )


def nearly_dead(rng):
    X, Y = relu_layers(rng)
    for a in (X, Y):
        a[:, :6] = 0
        mask = rng.random((a.shape[0], 6)) < 0.01
        a[:, 6:12] = np.where(mask, 1e-4 * a[:, 6:12] + 1e-4, 0).astype(np.float32)
    return X, Y


def critical_eps_error(X, Y) -> float:
    exact = nsm.match_thresholds(nsm.Gram.from_arrays(X, Y, precision="float64"))
    mixed = nsm.match_thresholds(nsm.Gram.from_arrays(X, Y, precision="mixed"))
    a, b = np.concatenate([exact.x, exact.y]), np.concatenate([mixed.x, mixed.y])
    np.testing.assert_array_equal(np.isinf(a), np.isinf(b))
    finite = np.isfinite(a)
    return float(np.abs(a[finite] - b[finite]).max())


def test_realistic_layers_keep_every_critical_eps_within_1e_5(rng):
    assert critical_eps_error(*relu_layers(rng)) <= REALISTIC_BOUND


@pytest.mark.parametrize("family", [near_duplicates, scales, nearly_dead])
def test_hard_families_keep_every_critical_eps_within_1e_3(rng, family):
    assert critical_eps_error(*family(rng)) <= HARD_BOUND


def test_mixed_is_float32_products_close_to_the_float64_pass(rng):
    X, Y = relu_layers(rng, d=5000, n=40)
    assert nsm.Gram.from_arrays(X, Y).precision == "float64"  # mixed is asked for
    g = nsm.Gram.from_arrays(X, Y, precision="mixed")
    assert g.precision == "mixed"
    A = np.hstack([X, Y]).astype(np.float64)
    G = A.T @ A
    scale = np.sqrt(np.outer(np.diag(G), np.diag(G)))
    error = np.abs(g.matrix - G) / scale
    assert error.max() < 1e-6
    assert error.max() > 0  # really float32 products: not the float64 pass
    np.testing.assert_allclose(g.column_sums, A.sum(axis=0), rtol=1e-12)


def test_float64_input_keeps_the_float64_pass(rng):
    X, Y = relu_layers(rng, d=3000, n=20)
    X64 = X.astype(np.float64)
    exact = nsm.Gram.from_arrays(X64, Y, precision="float64").matrix
    np.testing.assert_array_equal(nsm.Gram.from_arrays(X64, Y, precision="mixed").matrix, exact)
    both = nsm.Gram.from_arrays(X64, Y.astype(np.float64), precision="float64").matrix
    np.testing.assert_array_equal(
        nsm.Gram.from_arrays(X64, Y.astype(np.float64), precision="mixed").matrix, both
    )


def test_precision_per_gram_per_batch_and_through_merge(rng):
    X, Y = relu_layers(rng, d=2000, n=16)
    whole64 = nsm.Gram.from_arrays(X, Y, precision="float64")
    g = nsm.Gram(16, 16, precision="float64")
    g.update(X[:1000], Y[:1000])
    g.update(X[1000:], Y[1000:], precision="mixed")
    assert g.precision == "float64"
    mixed_half = nsm.Gram(16, 16, precision="float64").update(X[1000:], Y[1000:], precision="mixed")
    first_half = nsm.Gram(16, 16, precision="float64").update(X[:1000], Y[:1000])
    np.testing.assert_array_equal(g.matrix, (first_half + mixed_half).matrix)
    assert (first_half + mixed_half).precision == "float64"
    np.testing.assert_allclose(g.matrix, whole64.matrix, rtol=1e-6)
    # float16 batches are read as float32, so they take the mixed pass like float32 ones.
    X16, Y16 = X.astype(np.float16), Y.astype(np.float16)
    np.testing.assert_array_equal(
        nsm.Gram.from_arrays(X16, Y16, precision="mixed").matrix,
        nsm.Gram.from_arrays(X16.astype(np.float32), Y16.astype(np.float32), precision="mixed").matrix,
    )


def test_mixed_blocks_and_threads_agree_with_float64(rng):
    X = rng.standard_normal((3000, 150)).astype(np.float32)
    Y = rng.standard_normal((3000, 140)).astype(np.float32)
    A = np.hstack([X, Y]).astype(np.float64)
    G = A.T @ A
    tol = 1e-5 * np.sqrt(np.outer(np.diag(G), np.diag(G)))
    for threads in (1, 2):
        full = _core.GramAccumulator(150, 140)
        full.update(X, Y, threads, "mixed")
        assert np.all(np.abs(full.matrix() - G) <= tol)


@pytest.mark.parametrize("bad", ["float32", "Mixed", None, 64])
def test_an_unknown_precision_is_refused(rng, bad):
    X, Y = relu_layers(rng, d=100, n=4)
    with pytest.raises(ValueError, match="precision must be 'float64' or 'mixed'"):
        nsm.Gram.from_arrays(X, Y, precision=bad)
    with pytest.raises(ValueError, match="precision must be 'float64' or 'mixed'"):
        nsm.Gram(4, 4).update(X, Y, precision=bad if bad is not None else "half")
    with pytest.raises(ValueError, match="precision must be 'float64' or 'mixed'"):
        nsm.Gram(4, 4, precision=bad)
