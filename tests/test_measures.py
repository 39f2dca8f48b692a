"""nsm.measures against plain NumPy/SciPy definitions on the raw activations (float64), and
streamed Grams against one-shot ones."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.linalg

import nsm
from nsm import measures
from tests import oracle
from tests.cases import related_layers

RCOND = 1e-10  # the test layers' spectra have clean gaps: zero directions vs O(1) ones


# ---- plain definitions on the raw activations ------------------------------------------------


def centred(a):
    a = np.asarray(a, dtype=np.float64)
    return a - a.mean(axis=0)


def basis(a):
    """Orthonormal basis of the column span of the centred activations (SVD, rank cutoff)."""
    u, s, _ = np.linalg.svd(centred(a), full_matrices=False)
    return u[:, s > RCOND * s[0]]


def ref_linear_cka(X, Y):
    Xc, Yc = centred(X), centred(Y)
    return np.linalg.norm(Xc.T @ Yc) ** 2 / (np.linalg.norm(Xc.T @ Xc) * np.linalg.norm(Yc.T @ Yc))


def ref_cca(X, Y):
    ux, uy = basis(X), basis(Y)
    rho = np.linalg.svd(ux.T @ uy, compute_uv=False)
    return np.sum(rho**2) / min(ux.shape[1], uy.shape[1])


def ref_svcca(X, Y, keep=0.99):
    kept = []
    for a in (X, Y):
        u, s, _ = np.linalg.svd(centred(a), full_matrices=False)
        var = s**2
        k = int(np.argmax(np.cumsum(var) >= keep * var.sum())) + 1
        kept.append(u[:, :k])
    rho = np.linalg.svd(kept[0].T @ kept[1], compute_uv=False)
    return np.mean(np.minimum(rho, 1.0))


def ref_procrustes(X, Y):
    Xc, Yc = centred(X), centred(Y)
    return np.linalg.norm(Xc.T @ Yc, "nuc") / (np.linalg.norm(Xc) * np.linalg.norm(Yc))


REFERENCES = {"linear_cka": ref_linear_cka, "cca": ref_cca, "svcca": ref_svcca, "procrustes": ref_procrustes}


# ---- test layers ------------------------------------------------------------------------------


def nasty_layers(rng, d=600):
    """Related ReLU layers plus a dead neuron, a constant one, a duplicate, a scaled duplicate
    and a combination of two others on each side, and neurons of very different scales."""
    X, Y = related_layers(rng, d, 8, 7)
    X = np.column_stack([X, np.zeros(d), np.full(d, 2.5), X[:, 0], 1e3 * X[:, 1], X[:, 2] - X[:, 3]])
    Y = np.column_stack([1e-3 * Y, Y[:, 4], np.zeros(d), np.full(d, -0.75), Y[:, 0] + 2 * Y[:, 1]])
    return X, Y


def layer_cases(rng):
    X, Y = related_layers(rng, 500, 12, 10)
    yield "related", X, Y, False
    X, Y = nasty_layers(rng)
    yield "dead-constant-duplicated", X, Y, False
    yield "gaussian", rng.standard_normal((400, 9)), rng.standard_normal((400, 6)) + 3.0, False
    # Fewer samples than neurons: every centred span is the whole centred sample space.
    yield "few-samples", rng.standard_normal((8, 12)), rng.standard_normal((8, 10)) ** 2, True


CASES = list(layer_cases(np.random.default_rng(7)))
IDS = [c[0] for c in CASES]


def quiet(function, *args, **kwargs):
    """Call a measure, ignoring the few-samples warning (tested on its own)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", nsm.FewSamplesWarning)
        return function(*args, **kwargs)


@pytest.mark.parametrize("name", sorted(REFERENCES))
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_equals_the_numpy_definition(case, name):
    _, X, Y, _ = case
    got = quiet(getattr(measures, name), X, Y)
    assert isinstance(got, float)
    assert got == pytest.approx(REFERENCES[name](X, Y), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_canonical_correlations_equal_scipy_principal_angles(case):
    _, X, Y, _ = case
    rho = np.cos(scipy.linalg.subspace_angles(centred(X), centred(Y)))
    assert quiet(measures.cca, X, Y) == pytest.approx(np.mean(rho**2), rel=1e-9)


def test_few_samples_make_cca_one_and_warn():
    rng = np.random.default_rng(3)
    X, Y = rng.standard_normal((8, 12)), rng.standard_normal((8, 10))
    for function in (measures.cca, measures.svcca):
        with pytest.warns(nsm.FewSamplesWarning, match="8 samples for 12 \\+ 10 neurons"):
            value = function(X, Y, keep=1.0) if function is measures.svcca else function(X, Y)
        assert value == pytest.approx(1.0, abs=1e-12)


def test_procrustes_is_the_optimum_of_scipy_orthogonal_procrustes(rng):
    X, Y = related_layers(rng, 500, 9, 9)
    Xc, Yc = centred(X), centred(Y)
    R, scale = scipy.linalg.orthogonal_procrustes(Yc, Xc)  # max over orthogonal R of <Yc R, Xc>
    norm = np.linalg.norm(Xc) * np.linalg.norm(Yc)
    assert measures.procrustes(X, Y) == pytest.approx(scale / norm, rel=1e-10)
    assert measures.procrustes(X, Y) == pytest.approx(np.sum((Yc @ R) * Xc) / norm, rel=1e-10)


def test_invariances(rng):
    X, Y = related_layers(rng, 500, 8, 6)
    Q = np.linalg.qr(rng.standard_normal((6, 6)))[0]
    moved = 3.0 * Y @ Q + 7.0  # rotation, isotropic scale, shift
    for function in (measures.linear_cka, measures.procrustes, measures.cca, measures.svcca):
        assert function(X, moved) == pytest.approx(function(X, Y), rel=1e-9)
    # CCA is invariant to any invertible map (SVCCA and CKA are not).
    M = rng.standard_normal((6, 6)) + 3 * np.eye(6)
    assert measures.cca(X, Y @ M) == pytest.approx(measures.cca(X, Y), rel=1e-9)
    for function in (measures.linear_cka, measures.cca, measures.svcca, measures.procrustes):
        assert function(X, X) == pytest.approx(1.0, rel=1e-12)


def test_svcca_keeps_the_fewest_directions(rng):
    # Centred orthogonal directions with variances 100, 10, 1, 0.001 in X and 1, 50, 5, 0.5 in Y
    # (no cumulative fraction of variance lies near the keep values tried).
    q = np.linalg.qr(centred(rng.standard_normal((1000, 4))))[0] * np.sqrt(1000)
    X = q * np.sqrt([100.0, 10.0, 1.0, 0.001])
    Y = q @ np.linalg.qr(rng.standard_normal((4, 4)))[0] * np.sqrt([1.0, 50.0, 5.0, 0.5])
    for keep in (0.5, 0.9, 0.95, 0.995, 0.999999):
        assert measures.svcca(X, Y, keep=keep) == pytest.approx(ref_svcca(X, Y, keep), rel=1e-10)
    # keep=0.9 keeps the first direction of both: correlation 1. keep=0.99999 keeps three of X
    # (not q3) and both of Y: correlations 1 and 0.
    Y = np.column_stack([q[:, 0], 0.05 * q[:, 3]])
    assert measures.svcca(X, Y, keep=0.9) == pytest.approx(1.0, rel=1e-12)
    assert measures.svcca(X, Y, keep=0.99999) == pytest.approx(0.5, rel=1e-12)


@pytest.mark.parametrize("name", ["linear_cka", "cca", "svcca", "procrustes"])
def test_a_layer_without_variance_gives_nan_and_names_it(rng, name):
    X, _ = related_layers(rng, 300, 5, 4)
    constant = np.column_stack([np.zeros(300), np.full(300, 1.25)])
    function = getattr(measures, name)
    with pytest.warns(nsm.NsmWarning, match="layer 'conv3' \\(Y\\) has no variance"):
        assert math.isnan(function(X, constant, names=("fc1", "conv3")))
    with pytest.warns(nsm.NsmWarning, match="layer 'X' \\(X\\) has no variance"):
        assert math.isnan(function(np.zeros((300, 3)), X))


def test_match_auc_of_orthogonal_pairs_is_exact():
    # Pair i: x_i and y_i at angle θ_i in their own plane, orthogonal to every other pair, so
    # both critical ε are sin θ_i. A lone X neuron orthogonal to all Y matches only at ε = 1;
    # a dead Y neuron never does.
    theta = np.array([0.0, 0.2, 0.7, 1.1])
    d = 2 * len(theta) + 1
    X = np.zeros((d, len(theta) + 1))
    Y = np.zeros((d, len(theta) + 1))
    for i, t in enumerate(theta):
        X[2 * i, i] = 1.0
        Y[2 * i, i], Y[2 * i + 1, i] = np.cos(t), np.sin(t)
    X[-1, -1] = 1.0  # the lone neuron; Y's last column stays zero (dead)
    X, Y = np.tile(X, (60, 1)), np.tile(Y, (60, 1))
    expected = 2 * np.sum(1 - np.sin(theta)) / (X.shape[1] + Y.shape[1])
    assert measures.match_auc(X, Y) == pytest.approx(expected, rel=1e-12)
    without_dead = 2 * np.sum(1 - np.sin(theta)) / (X.shape[1] + Y.shape[1] - 1)
    assert measures.match_auc(X, Y, count_dead=False) == pytest.approx(without_dead, rel=1e-12)
    t = nsm.match_thresholds(X, Y)
    assert measures.match_auc(t) == pytest.approx(expected, rel=1e-12)


def test_match_auc_lies_between_the_oracles_riemann_sums(rng):
    X, Y = related_layers(rng, 300, 6, 5)
    grid = np.linspace(0.0, 1.0, 201)
    sims = []
    for e in grid:
        mx, my = oracle.max_match(X, Y, e)
        sims.append((len(mx) + len(my)) / 11)
    sims = np.array(sims)
    h = grid[1] - grid[0]
    lower, upper = h * sims[:-1].sum(), h * sims[1:].sum()  # MMS is non-decreasing in ε
    assert lower - 1e-9 <= measures.match_auc(X, Y) <= upper + 1e-9
    assert upper - lower < 0.01  # the bracket is tight enough to mean something


def test_match_auc_of_a_dead_layer_is_nan_but_a_constant_layer_matches():
    rng = np.random.default_rng(5)
    X = rng.random((200, 4))
    with pytest.warns(nsm.NsmWarning, match="layer 'b' \\(Y\\) has no live neuron"):
        assert math.isnan(measures.match_auc(X, np.zeros((200, 3)), names=("a", "b")))
    ones = np.column_stack([X[:, 0], np.ones(200)])
    assert measures.match_auc(ones, np.ones((200, 1))) > 0  # uncentred: constants span each other


@pytest.mark.parametrize("name", ["linear_cka", "cca", "svcca", "procrustes", "match_auc"])
@pytest.mark.parametrize("case", CASES[:3], ids=IDS[:3])
def test_streaming_in_any_batch_split_gives_the_one_shot_value(case, name):
    _, X, Y, _ = case
    function = getattr(measures, name)
    one_shot = function(nsm.Gram.from_arrays(X, Y))
    rng = np.random.default_rng(11)
    for _ in range(3):
        cuts = np.sort(rng.choice(np.arange(1, len(X)), size=rng.integers(1, 12), replace=False))
        gram = nsm.Gram(X.shape[1], Y.shape[1])
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(X)]):
            gram.update(X[lo:hi], Y[lo:hi])
        assert function(gram) == pytest.approx(one_shot, rel=1e-10, abs=1e-14)
    # Merged Grams of disjoint halves (as summed across machines) too.
    half = len(X) // 2
    merged = nsm.Gram.from_arrays(X[:half], Y[:half]) + nsm.Gram.from_arrays(X[half:], Y[half:])
    assert function(merged) == pytest.approx(one_shot, rel=1e-10, abs=1e-14)


def test_arrays_and_gram_give_the_same_value_and_inputs_are_untouched(rng):
    X, Y = nasty_layers(rng)
    X32 = X.astype(np.float32)
    copies = X32.copy(), Y.copy()
    gram = nsm.Gram.from_arrays(X32, Y)
    for name in ("linear_cka", "cca", "svcca", "procrustes", "match_auc"):
        function = getattr(measures, name)
        assert function(X32, Y) == function(gram)
    assert np.array_equal(X32, copies[0]) and np.array_equal(Y, copies[1])


def test_bad_arguments(rng):
    X, Y = related_layers(rng, 100, 3, 2)
    gram = nsm.Gram.from_arrays(X, Y)
    with pytest.raises(TypeError, match="takes \\(X, Y\\) or \\(gram\\)"):
        measures.linear_cka(X)
    with pytest.raises(TypeError, match="got a Gram and a second argument"):
        measures.cca(gram, Y)
    with pytest.raises(TypeError, match="thresholds and a second argument"):
        measures.match_auc(nsm.match_thresholds(gram), Y)
    with pytest.raises(ValueError, match="X has 100 samples but Y has 99"):
        measures.procrustes(X, Y[:99])
    with pytest.raises(ValueError, match="gram has no samples"):
        measures.linear_cka(nsm.Gram(3, 2))
    for keep, error in ((0.0, ValueError), (1.5, ValueError), ("0.9", TypeError), (True, TypeError)):
        with pytest.raises(error, match="keep must be"):
            measures.svcca(X, Y, keep=keep)
    with pytest.raises(TypeError, match="names must be a pair"):
        measures.linear_cka(X, Y, names="ab")
    with pytest.raises(ValueError, match="NaN or Inf"):
        measures.linear_cka(np.full((10, 2), np.nan), Y[:10])


@pytest.mark.parametrize("name", ["cca", "svcca"])
def test_rank_decisions_hold_on_a_mixed_precision_gram_of_float32_layers(rng, name):
    # Dead, constant and duplicated float32 neurons: the mixed pass's float32 rounding must not
    # count as variance (it made CCA 0.48 where the definition gives 0.39).
    X, Y = nasty_layers(rng, d=5000)
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    mixed = nsm.Gram.from_arrays(X32, Y32, precision="mixed")
    expected = REFERENCES[name](X32.astype(np.float64), Y32.astype(np.float64))
    assert quiet(getattr(measures, name), mixed) == pytest.approx(expected, rel=1e-4)
    assert quiet(getattr(measures, name), X32, Y32) == pytest.approx(expected, rel=1e-9)
