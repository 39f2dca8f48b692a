from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import nsm
from tests import oracle
from tests.cases import REFERENCE_X, REFERENCE_Y, examples, nasty_layers, quiet, related_layers, with_layout


def assert_v_minimal(X, Y, eps, m, neuron):
    """m is an eps-match containing neuron, and removing any other neuron of it and taking
    the maximum match of the rest loses neuron (checked by the SVD oracle)."""
    side, v = neuron
    xs, ys = m.x, m.y
    assert v in (xs if side == "x" else ys)
    assert oracle.is_match(X, Y, xs, ys, eps)
    for drop_side, arr in (("x", xs), ("y", ys)):
        for u in arr:
            if (drop_side, u) == (side, v):
                continue
            tx = xs[xs != u] if drop_side == "x" else xs
            ty = ys[ys != u] if drop_side == "y" else ys
            mx, my = oracle.max_match(X[:, tx], Y[:, ty], eps)
            kept = tx[mx] if side == "x" else ty[my]
            assert v not in kept, f"removing {drop_side}{u} keeps {side}{v}: not minimal"


def planted(rng, d=600):
    """Groups of neurons that match only as groups, in separate subspaces: 1-1, 1-1, 2-2, 3-3.
    (A 3-5 group cannot be simple at small eps: 5 vectors within the 3-D span of 3 others are
    redundant, so 3 of them already match; that is the redundant case tested further down.)"""
    xs, ys = [], []
    for dim in (1, 1, 2, 3):
        basis = rng.standard_normal((d, dim))
        xs.append(basis @ rng.standard_normal((dim, dim)))
        ys.append(basis @ rng.standard_normal((dim, dim)))
    X = np.hstack(xs + [rng.standard_normal((d, 2))])  # two unmatched neurons in X
    Y = np.hstack(ys)
    return X, Y


def test_spec_reference():
    m = quiet(nsm.minimal_match, REFERENCE_X, REFERENCE_Y, 0.1, ("x", 0))
    assert (m.x.tolist(), m.y.tolist()) == ([0, 1], [1, 2])
    assert quiet(nsm.minimal_match, REFERENCE_X, REFERENCE_Y, 0.1, ("y", 0)) is None  # not in MM


def test_planted_groups_are_recovered_exactly(rng):
    X, Y = planted(rng)
    s = nsm.simple_matches(X, Y, 0.01, progress=False)
    got = sorted((m.x.tolist(), m.y.tolist()) for m in s)
    assert got == [([0], [0]), ([1], [1]), ([2, 3], [2, 3]), ([4, 5, 6], [4, 5, 6])]
    assert s.kinds() == {"1-1": 2, "1-many": 0, "many-many": 2}
    assert s.sizes()[(3, 3)] == 1
    assert s.not_matched == (("x", 7), ("x", 8))
    assert s.coverage()["1-1"] == pytest.approx(4 / 14)
    assert s.coverage()["many-many"] == pytest.approx(10 / 14)
    # Every neuron of a group led to that group.
    group = next(m for m in s if len(m.y) == 3)
    assert sorted(group.found_from) == [("x", 4), ("x", 5), ("x", 6), ("y", 4), ("y", 5), ("y", 6)]
    assert "SimpleMatches(eps=0.01, 4 matches" in repr(s)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_result_is_a_v_minimal_match(seed):
    rng = np.random.default_rng(seed)
    X, Y = related_layers(rng, 300, 8, 7, shared=3, noise=0.2)
    eps = 0.45
    mm = nsm.max_match(X, Y, eps)
    for side, arr in (("x", mm.x), ("y", mm.y)):
        for v in arr[:4]:
            for order, s in (("xy", None), ("random", seed)):
                m = nsm.minimal_match(X, Y, eps, (side, int(v)), order=order, seed=s)
                assert_v_minimal(X, Y, eps, m, (side, int(v)))


@pytest.mark.parametrize("seed", [3, 4, 5, 6])
def test_xy_order_equals_the_authors_procedure(seed):
    rng = np.random.default_rng(seed)
    X, Y = related_layers(rng, 200, 7, 6, shared=3, noise=0.3)
    for eps in (0.3, 0.5):
        mm = oracle.robust_max_match(X, Y, eps)
        if mm is None:
            continue
        for side, arr in (("x", mm[0]), ("y", mm[1])):
            for v in arr[:3]:
                expected = oracle.authors_minimal_match(X, Y, eps, side, int(v))
                got = nsm.minimal_match(X, Y, eps, (side, int(v)))
                assert (got.x.tolist(), got.y.tolist()) == (expected[0].tolist(), expected[1].tolist())


def test_redundant_sides_give_different_valid_answers_by_seed(rng):
    # X and Y both hold 4 generic vectors of one 3-D subspace: any 3 of one side span it, so
    # neuron x0 has several minimal matches.
    basis = rng.standard_normal((500, 3))
    X = basis @ rng.standard_normal((3, 4))
    Y = basis @ rng.standard_normal((3, 4))
    answers = set()
    for seed in range(12):
        m = nsm.minimal_match(X, Y, 0.001, ("x", 0), order="random", seed=seed)
        assert_v_minimal(X, Y, 0.001, m, ("x", 0))
        answers.add((tuple(m.x), tuple(m.y)))
    assert len(answers) > 1


def test_random_order_is_reproducible(rng):
    X, Y = related_layers(rng, 300, 10, 10, shared=4)
    a = nsm.simple_matches(X, Y, 0.5, order="random", seed=7, progress=False)
    b = nsm.simple_matches(X, Y, 0.5, order="random", seed=7, progress=False)
    assert [(m.x.tolist(), m.y.tolist()) for m in a] == [(m.x.tolist(), m.y.tolist()) for m in b]


def test_simple_matches_union_is_the_maximum_match(rng):
    X, Y = related_layers(rng, 400, 12, 10, shared=5)
    s = nsm.simple_matches(X, Y, 0.45, progress=False)
    xs = sorted(set().union(*[m.x.tolist() for m in s]))
    ys = sorted(set().union(*[m.y.tolist() for m in s]))
    assert (xs, ys) == (s.maximum_match.x.tolist(), s.maximum_match.y.tolist())
    searched = sum(len(m.found_from) for m in s)
    assert searched == len(xs) + len(ys)


def test_neurons_narrows_the_searches(rng):
    X, Y = planted(rng)
    s = nsm.simple_matches(X, Y, 0.01, neurons=[("x", 2), ("y", 0), ("x", 8)], progress=False)
    assert [(m.x.tolist(), m.y.tolist()) for m in s] == [([2, 3], [2, 3]), ([0], [0])]
    assert s.not_matched == (("x", 8),)


def test_gram_input(rng):
    X, Y = planted(rng)
    g = nsm.Gram.from_arrays(X, Y)
    m = nsm.minimal_match(g, 0.01, ("y", 6))
    assert (m.x.tolist(), m.y.tolist()) == ([4, 5, 6], [4, 5, 6])


def test_bad_arguments(rng):
    X, Y = planted(rng)
    with pytest.raises(TypeError, match=r"neuron must be \('x', i\) or \('y', j\)"):
        nsm.minimal_match(X, Y, 0.1, 3)
    with pytest.raises(ValueError, match="out of range: layer Y has 7 neurons"):
        nsm.minimal_match(X, Y, 0.1, ("y", 7))
    with pytest.raises(ValueError, match="order must be 'xy' or 'random'"):
        nsm.minimal_match(X, Y, 0.1, ("x", 0), order="yx")
    with pytest.raises(TypeError, match="eps must be a single number"):
        nsm.simple_matches(X, Y, [0.1, 0.2], progress=False)
    with pytest.raises(TypeError, match="each of neurons"):
        nsm.simple_matches(X, Y, 0.1, neurons=[("z", 0)], progress=False)
    with pytest.raises(TypeError, match="minimal_match"):
        nsm.minimal_match(X, Y, 0.1)


def test_ctrl_c_stops_the_search():
    # A search long enough to be interrupted; SIGINT arrives while the C++ loop runs.
    rng = np.random.default_rng(0)
    X, Y = related_layers(rng, 3000, 300, 300, shared=60, noise=0.3)
    g = nsm.Gram.from_arrays(X, Y)
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    # Python's own Ctrl-C handler, as in a user's session: a library loaded by an earlier test
    # of the suite may have installed another one at the C level (the full suite did not raise).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    start = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            nsm.simple_matches(g, 0.9, progress=False)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    # Liveness, not speed: the run would take far longer than this if the signal were ignored.
    assert time.monotonic() - start < 30


def robust_sub_match(X, Y, tx, ty, eps):
    """The oracle's maximum match of the sub-layers, or None near a tie."""
    r = oracle.robust_max_match(X[:, tx], Y[:, ty], eps)
    return None if r is None else (tx[r[0]], ty[r[1]])


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(nasty_layers(), st.floats(0.05, 0.95), st.integers(0, 2**16), st.sampled_from(["xy", "random"]))
def test_hypothesis_minimal_matches_are_v_minimal(layers, eps, pick, order):
    X, Y, layout = layers
    mm = oracle.robust_max_match(X, Y, eps)
    assume(mm is not None and len(mm[0]) > 0)
    members = [("x", int(i)) for i in mm[0]] + [("y", int(j)) for j in mm[1]]
    side, v = members[pick % len(members)]
    m = quiet(
        nsm.minimal_match,
        with_layout(X, layout),
        with_layout(Y, layout),
        eps,
        (side, v),
        order=order,
        seed=pick,
    )
    assert m is not None and v in (m.x if side == "x" else m.y)
    sub = robust_sub_match(X, Y, m.x, m.y, eps)
    assume(sub is not None)
    assert sub[0].tolist() == m.x.tolist() and sub[1].tolist() == m.y.tolist()  # an eps-match
    for drop_side, arr in (("x", m.x), ("y", m.y)):
        for u in arr:
            if (drop_side, u) == (side, v):
                continue
            tx = m.x[m.x != u] if drop_side == "x" else m.x
            ty = m.y[m.y != u] if drop_side == "y" else m.y
            rest = robust_sub_match(X, Y, tx, ty, eps)
            assume(rest is not None)
            assert v not in (rest[0] if side == "x" else rest[1])
