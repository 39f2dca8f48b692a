from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nsm
from tests import oracle
from tests.cases import REFERENCE_X, REFERENCE_Y, examples, nasty_layers, quiet, related_layers, with_layout


def as_sets(t: nsm.Thresholds, eps: float):
    return np.flatnonzero(t.x <= eps).tolist(), np.flatnonzero(t.y <= eps).tolist()


def test_spec_reference():
    t = quiet(nsm.match_thresholds, REFERENCE_X, REFERENCE_Y)
    assert as_sets(t, 0.1) == ([0, 1, 2, 3], [1, 2, 3, 4])
    assert t.y[0] == 1.0  # Y neuron 0 only matches once nothing is required of the span


def test_equals_oracle_on_an_eps_grid(rng):
    X, Y = related_layers(rng, 500, 25, 20)
    t = nsm.match_thresholds(X, Y)
    for eps in rng.uniform(0, 1, 25):
        expected = oracle.robust_max_match(X, Y, eps)
        if expected is None:
            continue
        assert as_sets(t, eps) == (expected[0].tolist(), expected[1].tolist()), eps


def test_every_level_agrees_with_a_from_scratch_recomputation(rng):
    X, Y = related_layers(rng, 400, 14, 12, noise=0.5)
    X = np.hstack([X, X[:, [0]], X[:, [1]] + X[:, [2]]])
    Y[:, 3] = 0.0
    t = nsm.match_thresholds(X, Y)
    allt = np.concatenate([t.x, t.y])
    n_x = X.shape[1]
    live = np.isfinite(allt)
    levels = np.unique(allt[live])
    assert len(levels) > 3
    for level in levels:
        # The peeling reaches this level with MM(level) = {t <= level} left (higher levels
        # went first); its largest ratio, from scratch by SVD, must be the level itself.
        sx = np.flatnonzero(t.x <= level)
        sy = np.flatnonzero(t.y <= level)
        r = np.concatenate(
            [oracle.ratios_against(X[:, sx], Y[:, sy]), oracle.ratios_against(Y[:, sy], X[:, sx])]
        )
        assert r.max() == pytest.approx(level, abs=1e-7)
    assert np.all(~live[[n_x + 3]])  # the dead neuron


def test_max_match_and_similarity_equal_the_direct_ones(rng):
    X, Y = related_layers(rng, 600, 30, 30, shared=10)
    t = nsm.match_thresholds(X, Y)
    grid = np.linspace(0, 1, 21)
    direct = nsm.max_match(X, Y, grid)
    np.testing.assert_allclose(t.similarity(grid), [m.similarity for m in direct])
    for m in direct:
        via = t.max_match(m.eps)
        assert (via.x.tolist(), via.y.tolist()) == (m.x.tolist(), m.y.tolist())
        assert via.similarity == m.similarity and via.eps == m.eps
    assert isinstance(t.similarity(0.3), float)


def test_curve_is_the_step_function(rng):
    X, Y = related_layers(rng, 300, 10, 8)
    t = nsm.match_thresholds(X, Y)
    c = t.curve()
    assert np.all(np.diff(c.breakpoints) > 0)
    np.testing.assert_allclose(c.similarity, t.similarity(c.breakpoints))
    below = np.maximum(c.breakpoints - 1e-12, 0)
    assert np.all(t.similarity(below[1:]) == c.similarity[:-1])
    assert t.eps_for(c.similarity[-1]) == c.breakpoints[-1]
    assert "half match at eps=" in repr(t)


def test_permuting_and_rescaling_leave_thresholds_unchanged(rng):
    X, Y = related_layers(rng, 500, 15, 12)
    t = nsm.match_thresholds(X, Y)
    px, py = rng.permutation(15), rng.permutation(12)
    sx, sy = rng.uniform(0.01, 100, 15), rng.uniform(0.01, 100, 12)
    u = nsm.match_thresholds(X[:, px] * sx, Y[:, py] * sy)
    np.testing.assert_allclose(u.x, t.x[px], atol=1e-9)
    np.testing.assert_allclose(u.y, t.y[py], atol=1e-9)


def test_duplicated_and_rank_deficient_sides(rng):
    X, Y = related_layers(rng, 400, 10, 10)
    X = np.hstack([X, X, X[:, :3] @ rng.integers(-2, 3, (3, 4))])
    Y = np.hstack([Y, Y[:, [1]] * 3])
    t = nsm.match_thresholds(X, Y)
    np.testing.assert_allclose(t.x[:10], t.x[10:20], atol=1e-9)  # duplicates share a threshold
    for eps in (0.2, 0.4, 0.6, 0.8):
        expected = oracle.robust_max_match(X, Y, eps)
        assert expected is not None
        assert as_sets(t, eps) == (expected[0].tolist(), expected[1].tolist())


def test_dead_neurons_and_count_dead(rng):
    X, Y = related_layers(rng, 300, 5, 5, noise=0.0)
    X[:, 0] = 0
    t = nsm.match_thresholds(X, Y)
    assert t.dead_x.tolist() == [0] and np.isinf(t.x[0])
    assert t.similarity(1.0) == pytest.approx(9 / 10)
    assert nsm.match_thresholds(X, Y, count_dead=False).similarity(1.0) == 1.0
    none = nsm.match_thresholds(X, np.zeros((300, 3)))
    assert np.all(np.isinf(none.x)) and none.similarity(1.0) == 0.0


def test_larger_case_mixing_downdates_and_rebuilds(rng):
    X, Y = related_layers(rng, 3000, 200, 180, shared=40, noise=0.6)
    t = nsm.match_thresholds(X, Y)
    for eps in (0.4, 0.5, 0.6, 0.7):
        expected = oracle.robust_max_match(X, Y, eps)
        if expected is None:
            continue
        assert as_sets(t, eps) == (expected[0].tolist(), expected[1].tolist())
    one = nsm.match_thresholds(X, Y, num_threads=1)
    np.testing.assert_array_equal(one.x, t.x)


def test_bad_arguments(rng):
    X, Y = related_layers(rng, 100, 3, 3)
    t = nsm.match_thresholds(X, Y)
    with pytest.raises(ValueError, match="eps must be finite and in"):
        t.similarity([0.5, 1.5])
    with pytest.raises(TypeError, match="one eps"):
        t.max_match([0.1, 0.2])
    with pytest.raises(ValueError, match="similarity must be in"):
        t.eps_for(0.0)
    with pytest.raises(TypeError, match="match_thresholds"):
        nsm.match_thresholds(nsm.Gram.from_arrays(X, Y), 0.1)


@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(nasty_layers(), st.lists(st.floats(0, 1), min_size=1, max_size=6))
def test_hypothesis_thresholds_equal_oracle(layers, grid):
    X, Y, layout = layers
    t = quiet(nsm.match_thresholds, with_layout(X, layout), with_layout(Y, layout))
    for eps in grid:
        expected = oracle.robust_max_match(X, Y, eps)
        if expected is None:
            continue
        assert as_sets(t, eps) == (expected[0].tolist(), expected[1].tolist())


@pytest.mark.parametrize("seed", range(6))
def test_a_critical_eps_names_a_match_that_contains_its_neurons(seed):
    # A neuron's ratio at its level can differ by a few ulps between the thresholds' peeling and
    # one eps's: max_match(g, t.eps_for(0.4)) gave 0.154 where 0.462 was due. The contract:
    # max_match(g, t_v) contains v, and max_match(g, t.eps_for(s)).similarity >= s.
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((400, 40))
    X = np.maximum(Z @ rng.standard_normal((40, 60)) + 0.3 * rng.standard_normal((400, 60)), 0)
    Y = np.maximum(Z @ rng.standard_normal((40, 60)) + 0.3 * rng.standard_normal((400, 60)), 0)
    g = nsm.Gram.from_arrays(X, Y)
    t = nsm.match_thresholds(g)
    levels = np.unique(np.concatenate([t.x, t.y]))
    levels = [float(v) for v in levels[np.isfinite(levels)]]
    for level, got in zip(levels, nsm.max_match(g, levels)):
        want = t.max_match(level)
        assert set(want.x) <= set(got.x) and set(want.y) <= set(got.y), level
    for s in np.linspace(0.05, 1.0, 20):
        e = t.eps_for(float(s))
        if np.isfinite(e):
            assert nsm.max_match(g, e).similarity >= s - 1e-12, (s, e)
