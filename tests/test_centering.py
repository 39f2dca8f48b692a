"""The centred match (centered=True) against the SVD oracle on explicitly centred activations."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import nsm
from nsm.gram import centered_matrix, constant_cutoff
from tests import oracle
from tests.cases import examples, nasty_layers, quiet, related_layers, with_layout

EPS_GRID = (0.05, 0.2, 0.35, 0.5, 0.7, 0.85, 0.95)


def centred(a: np.ndarray, constant: tuple[int, ...] = ()) -> np.ndarray:
    """X - X.mean(0) in float64, with the columns known to be constant set to exact zeros (the
    subtraction leaves rounding noise in them, which the oracle would take for a live neuron)."""
    out = np.asarray(a, dtype=np.float64)
    out = out - out.mean(axis=0)
    out[:, list(constant)] = 0.0
    return out


def assert_matches_oracle(X, Y, Xc, Yc, eps_grid=EPS_GRID, **kwargs):
    checked = 0
    for eps in eps_grid:
        expected = oracle.robust_max_match(Xc, Yc, eps)
        if expected is None:
            continue  # a near-tie at eps
        got = quiet(nsm.max_match, X, Y, eps, centered=True, **kwargs)
        assert got.centered
        assert got.x.tolist() == expected[0].tolist(), eps
        assert got.y.tolist() == expected[1].tolist(), eps
        checked += 1
    assert checked >= len(eps_grid) - 2


def test_matches_oracle_on_centred_related_layers(rng):
    X, Y = related_layers(rng, 400, 20, 25)
    X, Y = X + 3.0, Y + 0.5  # means the uncentred match would share
    assert_matches_oracle(X, Y, centred(X), centred(Y))


def test_differs_from_the_uncentred_match_on_random_relu_layers(rng):
    # Two independent post-ReLU layers: the uncentred match matches them fully near 0.85
    # (their shared mean direction), the centred one does not.
    X = np.maximum(rng.standard_normal((2000, 20)), 0)
    Y = np.maximum(rng.standard_normal((2000, 20)), 0)
    assert nsm.match_thresholds(X, Y).similarity(0.9) == 1.0
    t = nsm.match_thresholds(X, Y, centered=True)
    assert t.similarity(0.9) == 0.0
    assert_matches_oracle(X, Y, centred(X), centred(Y), eps_grid=(0.5, 0.9, 0.97))


def test_constant_neurons_are_dead(rng):
    X, Y = related_layers(rng, 300, 8, 6)
    X = np.hstack([X, np.full((300, 1), 2.5), np.zeros((300, 1))])
    Y = np.hstack([np.full((300, 1), -7.0), Y])
    t = nsm.match_thresholds(X, Y, centered=True)
    assert t.dead_x.tolist() == [8, 9] and t.dead_y.tolist() == [0]
    assert np.isinf(t.x[8]) and np.isinf(t.y[0])
    # uncentred, the constant neurons are live (and match each other exactly)
    u = nsm.match_thresholds(X, Y)
    assert u.dead_x.tolist() == [9] and u.dead_y.tolist() == []
    assert_matches_oracle(X, Y, centred(X, (8, 9)), centred(Y, (0,)))


@pytest.mark.parametrize("mean", [1e3, 1e8, -4e5])
def test_large_mean_tiny_variance_is_not_made_live_by_rounding(rng, mean):
    # sin² against the constant vector of 1e-24 and less: the centred diagonal G_vv - s_v²/n is
    # pure cancellation (of either sign) and must give a dead neuron, never a live one or a
    # negative diagonal.
    d = 500
    X, Y = related_layers(rng, d, 6, 5)
    tiny = mean + mean * 1e-12 * rng.standard_normal(d)
    X = np.hstack([X, tiny[:, None]])
    Y = np.hstack([Y, (mean + np.zeros(d))[:, None]])
    g = nsm.Gram.from_arrays(X, Y)
    Gc = centered_matrix(g)
    assert np.all(np.diag(Gc) >= 0)
    assert np.diag(Gc)[6] == 0 and np.diag(Gc)[-1] == 0
    assert not np.any(Gc[6]) and not np.any(Gc[:, -1])
    t = nsm.match_thresholds(g, centered=True)
    assert t.dead_x.tolist() == [6] and t.dead_y.tolist() == [5]
    assert_matches_oracle(X, Y, centred(X, (6,)), centred(Y, (5,)))


def test_large_mean_moderate_variance_stays_live(rng):
    # sin² against the constant vector about 1e-6, far above the cutoff (~1e-13): a live neuron
    # whose centred match is the oracle's on centred data.
    d = 600
    X, Y = related_layers(rng, d, 6, 5)
    X = np.hstack([X, 1000.0 + Y[:, :1]])  # X's last neuron is Y's first plus a large mean
    g = nsm.Gram.from_arrays(X, Y)
    ratio = np.diag(centered_matrix(g))[6] / np.diag(g.matrix)[6]
    assert constant_cutoff(g) < 1e-10 < ratio < 1e-5
    t = nsm.match_thresholds(g, centered=True)
    assert t.dead_x.tolist() == [] and t.x[6] < 1e-4
    assert_matches_oracle(X, Y, centred(X), centred(Y))


def test_fewer_samples_than_neurons(rng):
    X, Y = related_layers(rng, 12, 9, 8)
    with pytest.warns(nsm.FewSamplesWarning, match="n_samples - 1 <= n_x \\+ n_y"):
        nsm.max_match(X, Y, 0.3, centered=True)
    assert_matches_oracle(X, Y, centred(X), centred(Y))


def test_few_samples_warning_counts_the_lost_dimension(rng):
    X, Y = related_layers(rng, 8, 4, 3)  # 8 samples for 7 neurons
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nsm.max_match(X, Y, 0.3)
    with pytest.warns(nsm.FewSamplesWarning):
        nsm.max_match(X, Y, 0.3, centered=True)


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nasty_layers())
def test_matches_oracle_on_nasty_layers(case):
    X, Y, layout = case
    Xl, Yl = with_layout(X, layout), with_layout(Y, layout)
    X64, Y64 = np.asarray(Xl, dtype=np.float64), np.asarray(Yl, dtype=np.float64)
    # columns constant over the samples are the centred match's dead neurons
    const_x = tuple(np.flatnonzero(np.ptp(X64, axis=0) == 0))
    const_y = tuple(np.flatnonzero(np.ptp(Y64, axis=0) == 0))
    Xc, Yc = centred(X64, const_x), centred(Y64, const_y)
    for eps in (0.1, 0.4, 0.8):
        expected = oracle.robust_max_match(Xc, Yc, eps)
        if expected is None:
            continue
        got = quiet(nsm.max_match, Xl, Yl, eps, centered=True)
        assert got.x.tolist() == expected[0].tolist(), eps
        assert got.y.tolist() == expected[1].tolist(), eps


def test_ratios_are_against_the_span_and_the_constant_vector(rng):
    # Equivalently the constant vector joins the other layer's span and the error is relative
    # to the neuron's centred norm.
    X, Y = related_layers(rng, 500, 7, 9)
    X, Y = X + 1.0, Y + 2.0
    r = nsm.ratios(X, Y, centered=True)
    ones = np.ones((500, 1))
    for a, b, got in ((X, Y, r.x), (Y, X, r.y)):
        span = np.hstack([b, ones])
        coef = np.linalg.lstsq(span, a, rcond=None)[0]
        expected = np.linalg.norm(a - span @ coef, axis=0) / np.linalg.norm(centred(a), axis=0)
        np.testing.assert_allclose(got, expected, atol=1e-7)
    np.testing.assert_allclose(r.x, oracle.ratios_against(centred(X), centred(Y)), atol=1e-7)


def test_streamed_batches_equal_one_shot(rng):
    X, Y = related_layers(rng, 1000, 12, 10)
    X, Y = X + 5.0, Y - 1.0
    g = nsm.Gram(12, 10)
    for start in range(0, 1000, 137):
        g.update(X[start : start + 137], Y[start : start + 137])
    streamed = nsm.match_thresholds(g, centered=True)
    one_shot = nsm.match_thresholds(X, Y, centered=True)
    np.testing.assert_allclose(streamed.x, one_shot.x, atol=1e-9)
    np.testing.assert_allclose(streamed.y, one_shot.y, atol=1e-9)
    # and the thresholds are those of the hand-centred activations, uncentred
    by_hand = nsm.match_thresholds(centred(X), centred(Y))
    np.testing.assert_allclose(streamed.x, by_hand.x, atol=1e-6)
    np.testing.assert_allclose(streamed.y, by_hand.y, atol=1e-6)


def test_minimal_and_simple_matches_match_the_oracle(rng):
    X, Y = related_layers(rng, 300, 6, 5, shared=3, noise=0.05, relu=False)
    X, Y = X + 2.0, Y + 1.0
    Xc, Yc = centred(X), centred(Y)
    eps = 0.1
    for side, v in (("x", 0), ("y", 2)):
        expected = oracle.authors_minimal_match(Xc, Yc, eps, side, v)
        got = nsm.minimal_match(X, Y, eps, (side, v), centered=True)
        if expected is None:
            assert got is None
        else:
            assert got is not None and got.centered
            assert got.x.tolist() == list(expected[0]) and got.y.tolist() == list(expected[1])
    s = nsm.simple_matches(X, Y, eps, progress=False, centered=True)
    assert s.maximum_match.centered and len(s) > 0
    for m in s:
        assert oracle.is_match(Xc, Yc, m.x, m.y, eps)


def test_centered_is_recorded(rng):
    X, Y = related_layers(rng, 200, 4, 4)
    m = nsm.max_match(X, Y, 0.5, centered=True)
    t = nsm.match_thresholds(X, Y, centered=True)
    assert m.centered and "centered" in repr(m)
    assert t.centered and "centered" in repr(t)
    assert t.max_match(0.5).centered
    assert not nsm.max_match(X, Y, 0.5).centered and "centered" not in repr(nsm.match_thresholds(X, Y))


def test_centered_must_be_a_bool(rng):
    X, Y = related_layers(rng, 50, 3, 3)
    with pytest.raises(TypeError, match="centered must be True or False"):
        nsm.max_match(X, Y, 0.5, centered="yes")
    with pytest.raises(TypeError, match="centered must be True or False"):
        nsm.match_thresholds(X, Y, centered=1)


def test_gram_without_column_sums_is_refused(rng):
    X, Y = related_layers(rng, 100, 3, 3)
    A = np.hstack([X, Y])
    bare = nsm.Gram.from_matrix(A.T @ A, n_x=3, n_samples=100)
    with pytest.raises(ValueError, match="column_sums"):
        nsm.match_thresholds(bare, centered=True)
    full = nsm.Gram.from_matrix(A.T @ A, n_x=3, n_samples=100, column_sums=A.sum(axis=0))
    np.testing.assert_allclose(
        nsm.match_thresholds(full, centered=True).x, nsm.match_thresholds(X, Y, centered=True).x, atol=1e-9
    )


def test_a_saved_gram_without_column_sums_is_still_refused(rng, tmp_path):
    # Gram.save wrote the unknown sums as zeros and load read them back as known, so a loaded
    # bare Gram gave the uncentred match under centered=True, silently.
    X, Y = related_layers(rng, 100, 3, 3)
    A = np.hstack([X + 5.0, Y])
    bare = nsm.Gram.from_matrix(A.T @ A, n_x=3, n_samples=100)
    bare.save(tmp_path / "bare.npz")
    with pytest.raises(ValueError, match="column_sums"):
        nsm.match_thresholds(nsm.Gram.load(tmp_path / "bare.npz"), centered=True)
    full = nsm.Gram.from_matrix(A.T @ A, n_x=3, n_samples=100, column_sums=A.sum(axis=0))
    full.save(tmp_path / "full.npz")
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    np.testing.assert_allclose(
        nsm.match_thresholds(nsm.Gram.load(tmp_path / "full.npz"), centered=True).x,
        nsm.match_thresholds(Xc, Yc).x,
        atol=1e-7,
    )


def test_input_gram_is_not_modified(rng):
    X, Y = related_layers(rng, 100, 3, 3)
    g = nsm.Gram.from_arrays(X + 1.0, Y)
    before = g.matrix.copy()
    nsm.max_match(g, 0.5, centered=True)
    np.testing.assert_array_equal(g.matrix, before)


def test_match_auc_centered_is_the_area_of_the_hand_centred_match(rng):
    # README said match_auc takes centered=True; it raised TypeError.
    X, Y = related_layers(rng, 400, 5, 4)
    X, Y = X + 3.0, Y + 1.0
    t = nsm.match_thresholds(X - X.mean(0), Y - Y.mean(0))
    every = np.concatenate([t.x, t.y])
    expected = float(np.sum(1 - every[np.isfinite(every)]) / len(every))  # Σ (1 - t_v) / n
    assert nsm.measures.match_auc(X, Y, centered=True) == pytest.approx(expected, abs=1e-7)
    assert nsm.measures.match_auc(nsm.match_thresholds(X, Y, centered=True), centered=True) == pytest.approx(
        expected, abs=1e-7
    )
    assert nsm.measures.match_auc(nsm.match_thresholds(X, Y, centered=True)) == pytest.approx(
        expected, abs=1e-7
    )
    with pytest.raises(ValueError, match="centred match: pass centered=True"):
        nsm.measures.match_auc(nsm.match_thresholds(X, Y, centered=True), centered=False)
