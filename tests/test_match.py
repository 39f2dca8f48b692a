from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import nsm
from tests import oracle
from tests.cases import REFERENCE_X, REFERENCE_Y, examples, nasty_layers, quiet, related_layers, with_layout


def test_spec_ratio_reference():
    r = nsm.ratios(np.array([[1.0], [1.0]]), np.array([[1.0], [0.0]]))
    assert r.x[0] == pytest.approx(0.70710678, abs=1e-8)
    assert r.y[0] == pytest.approx(0.70710678, abs=1e-8)


def test_spec_maximum_match_reference():
    with pytest.warns(nsm.FewSamplesWarning, match="6 samples for 4 \\+ 5 neurons"):
        m = nsm.max_match(REFERENCE_X, REFERENCE_Y, 0.1)
    assert m.x.tolist() == [0, 1, 2, 3]
    assert m.y.tolist() == [1, 2, 3, 4]
    assert m.similarity == pytest.approx(8 / 9)
    assert m.eps == 0.1


def test_matches_oracle_on_related_layers(rng):
    X, Y = related_layers(rng, 400, 20, 25)
    for eps in (0.05, 0.2, 0.35, 0.5, 0.7, 0.9):
        expected = oracle.robust_max_match(X, Y, eps)
        assert expected is not None
        got = nsm.max_match(X, Y, eps)
        assert got.x.tolist() == expected[0].tolist(), eps
        assert got.y.tolist() == expected[1].tolist(), eps


def test_sequence_of_eps_equals_one_by_one(rng):
    X, Y = related_layers(rng, 300, 15, 12)
    eps = [0.6, 0.2, 0.4, 0.2]
    together = nsm.max_match(X, Y, eps)
    assert [r.eps for r in together] == eps
    for r in together:
        alone = nsm.max_match(X, Y, r.eps)
        assert r.x.tolist() == alone.x.tolist() and r.y.tolist() == alone.y.tolist()


def test_gram_input_equals_array_input(rng):
    X, Y = related_layers(rng, 300, 10, 10)
    g = nsm.Gram.from_arrays(X, Y)
    a, b = nsm.max_match(X, Y, 0.4), nsm.max_match(g, 0.4)
    assert a.x.tolist() == b.x.tolist() and a.y.tolist() == b.y.tolist()


def test_ratios_match_oracle(rng):
    X, Y = related_layers(rng, 500, 12, 9)
    r = nsm.ratios(X, Y)
    np.testing.assert_allclose(r.x, oracle.ratios_against(X, Y), atol=1e-7)
    np.testing.assert_allclose(r.y, oracle.ratios_against(Y, X), atol=1e-7)


def test_identical_layers_match_fully_at_zero(rng):
    X, _ = related_layers(rng, 200, 8, 1)
    m = nsm.max_match(X, X[:, ::-1].copy(), 0.0)
    assert m.similarity == 1.0


def test_dead_neurons_are_reported_and_never_matched(rng):
    X, Y = related_layers(rng, 300, 6, 6, noise=0.0)
    X[:, 2] = 0.0
    Y[:, [0, 4]] = 0.0
    m = nsm.max_match(X, Y, 1.0)
    assert m.dead_x.tolist() == [2] and m.dead_y.tolist() == [0, 4]
    assert 2 not in m.x and 0 not in m.y and 4 not in m.y
    assert m.similarity == pytest.approx(9 / 12)
    m2 = nsm.max_match(X, Y, 1.0, count_dead=False)
    assert m2.similarity == pytest.approx(1.0)
    r = nsm.ratios(X, Y)
    assert r.x[2] == 0.0 and r.y[0] == 0.0


def test_one_layer_all_dead_gives_empty_match(rng):
    X, _ = related_layers(rng, 100, 3, 1)
    m = nsm.max_match(X, np.zeros((100, 4)), 1.0)
    assert len(m.x) == 0 and len(m.y) == 0 and m.dead_y.tolist() == [0, 1, 2, 3]
    assert np.all(nsm.ratios(X, np.zeros((100, 4))).x == 1.0)


def test_duplicated_and_dependent_neurons(rng):
    X, Y = related_layers(rng, 300, 8, 8)
    X = np.hstack([X, X[:, [1]], 2 * X[:, [2]] - X[:, [3]]])
    Y = np.hstack([Y, Y[:, [0]], Y[:, [0]]])
    for eps in (0.3, 0.5, 0.8):
        expected = oracle.robust_max_match(X, Y, eps)
        assert expected is not None
        got = nsm.max_match(X, Y, eps)
        assert (got.x.tolist(), got.y.tolist()) == (expected[0].tolist(), expected[1].tolist())


def test_swapping_layers_swaps_result(rng):
    X, Y = related_layers(rng, 300, 10, 14)
    a, b = nsm.max_match(X, Y, 0.45), nsm.max_match(Y, X, 0.45)
    assert a.x.tolist() == b.y.tolist() and a.y.tolist() == b.x.tolist()


def test_rescaling_and_permuting_neurons_only_relabels(rng):
    X, Y = related_layers(rng, 400, 12, 10)
    px, py = rng.permutation(12), rng.permutation(10)
    sx, sy = rng.uniform(0.01, 100, 12), rng.uniform(0.01, 100, 10)
    for eps in (0.3, 0.5):
        base = nsm.max_match(X, Y, eps)
        moved = nsm.max_match(X[:, px] * sx[px], Y[:, py] * sy[py], eps)
        assert sorted(px[moved.x].tolist()) == base.x.tolist()
        assert sorted(py[moved.y].tolist()) == base.y.tolist()


def test_one_and_two_threads_agree(rng):
    X, Y = related_layers(rng, 2000, 300, 280, shared=40)
    one = nsm.max_match(X, Y, [0.3, 0.5, 0.7], num_threads=1)
    two = nsm.max_match(X, Y, [0.3, 0.5, 0.7], num_threads=2)
    for a, b in zip(one, two):
        assert a.x.tolist() == b.x.tolist() and a.y.tolist() == b.y.tolist()
    np.testing.assert_array_equal(nsm.ratios(X, Y, num_threads=1).x, nsm.ratios(X, Y, num_threads=2).x)


def test_larger_case_with_downdates_matches_oracle(rng):
    # Enough neurons that the engine mixes Givens downdates with rebuilds.
    X, Y = related_layers(rng, 1500, 120, 100, shared=30, noise=0.6)
    for eps in (0.55, 0.6, 0.65):
        expected = oracle.robust_max_match(X, Y, eps)
        assert expected is not None
        got = nsm.max_match(X, Y, eps)
        assert (got.x.tolist(), got.y.tolist()) == (expected[0].tolist(), expected[1].tolist())


def test_result_is_immutable(rng):
    X, Y = related_layers(rng, 100, 3, 3)
    m = nsm.max_match(X, Y, 0.5)
    with pytest.raises(ValueError):
        m.x[0] = 7
    with pytest.raises(AttributeError):
        m.eps = 0.2  # type: ignore[misc]
    assert "MatchResult(eps=0.5" in repr(m)


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(nasty_layers(), st.floats(0.0, 1.0), st.booleans())
def test_hypothesis_matches_oracle(layers, eps, near_a_ratio):
    X, Y, layout = layers
    if near_a_ratio:  # put eps just beside one neuron's ratio against the other layer
        r = np.concatenate(
            [
                oracle.ratios_against(X[:, oracle.live(X)], Y[:, oracle.live(Y)]),
                oracle.ratios_against(Y[:, oracle.live(Y)], X[:, oracle.live(X)]),
            ]
        )
        if len(r):
            eps = float(np.clip(r[int(eps * (len(r) - 1))] + 1e-5, 0.0, 1.0))
    expected = oracle.robust_max_match(X, Y, eps)
    assume(expected is not None)
    Xl, Yl = with_layout(X, layout), with_layout(Y, layout)
    got = quiet(nsm.max_match, Xl, Yl, eps)
    assert got.x.tolist() == expected[0].tolist()
    assert got.y.tolist() == expected[1].tolist()
    np.testing.assert_array_equal(Xl, with_layout(X, layout))  # the input is untouched


def _exact_block(seed: int, d: int, extra: int, dtype=np.float64):
    """Post-ReLU X (d x 6, plus `extra` unrelated neurons) and Y whose first 6 neurons are
    X's first 6 mixed by a random 6 x 6 matrix: an exact 6 + 6 match."""
    rng = np.random.default_rng(seed)
    X = np.maximum(rng.standard_normal((d, 6)), 0)
    Y = np.hstack([X @ rng.standard_normal((6, 6)), np.maximum(rng.standard_normal((d, extra)), 0)])
    X = np.hstack([X, np.maximum(rng.standard_normal((d, extra)), 0)])
    return X.astype(dtype), Y.astype(dtype)


# (seed, d, extra, dtype): cases where the paths used to disagree (0 + 0 against 6 + 6), then
# cases where eps = 0 used to miss the exact block.
EPS0_CASES = [
    (47, 20, 3, np.float64),
    (87, 20, 3, np.float32),
    (31, 60, 3, np.float32),
    (40, 60, 3, np.float32),
    (47, 200, 3, np.float32),
] + [(seed, d, 0, np.float64) for d in (30, 100) for seed in range(25)]


@pytest.mark.parametrize("seed, d, extra, dtype", EPS0_CASES)
def test_exact_matches_survive_rounding_at_eps_0_on_every_path(seed, d, extra, dtype):
    X, Y = _exact_block(seed, d, extra, dtype)
    # The promise is the float64 pass's: mixed float32 products round at about 1e-7 (README).
    g = nsm.Gram.from_arrays(X, Y, precision="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", nsm.FewSamplesWarning)
        paths = [
            nsm.max_match(g, 0.0),
            nsm.max_match(g, [0.5, 0.0])[-1],
            nsm.max_match(g, [1.0, 0.0])[1],
            nsm.max_match(g, [0.3, 0.1, 0.0])[-1],
            nsm.match_thresholds(g).max_match(0),
        ]
        minimal = nsm.minimal_match(g, 0.0, ("x", 0))
    for m in paths:
        assert m.x.tolist() == list(range(6)) and m.y.tolist() == list(range(6))
    assert minimal is not None and 0 in minimal.x


@pytest.mark.parametrize("sine, matched", [(1e-9, False), (1e-5, True)])
def test_directions_below_the_rank_cutoff_are_not_resolved(rng, sine, matched):
    # The documented limit of the Gram (README, "ε = 0"): X's second neuron is b + sine * e.
    # Its direction e is kept when sine**2 is above rank_tol = eps_machine * max(d, n) (here
    # about 4e-14) and dropped below it, so Y's neuron e matches X exactly or not at all.
    d = 200
    q = np.linalg.qr(rng.standard_normal((d, 2)))[0]
    b, e = q[:, :1], q[:, 1:]
    X = np.hstack([b, b + sine * e])
    Y = np.hstack([e, b])
    assert oracle.ratios_against(Y[:, :1], X)[0] < 1e-6  # least squares resolves e either way
    r = nsm.ratios(X, Y)
    assert bool(r.y[0] == 0.0) is matched and bool(r.y[0] > 0.99) is (not matched)
