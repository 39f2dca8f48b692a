"""The zero tolerance (docs/method.md, "The zero tolerance") does not depend on the order of
the first factor: the same layers give the same matches through both entry points of the core
(thresholds, one-eps max_match), with their neurons permuted, and in the torch engine."""

from __future__ import annotations

import numpy as np
import pytest

import nsm
from nsm import _core
from tests.cases import quiet


def ill_conditioned_layers(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """X: k independent neurons and 3 that are combinations of them plus a small perturbation
    (cond(C_XX) about 1e6 to 1e10); Y: 4 exact combinations of X's neurons and 2 independent
    ones. Some of Y's residuals against X and X's against Y fall between the rank cutoff and
    the zero tolerance, where a tolerance that followed the pivot order would decide them."""
    rng = np.random.default_rng(seed)
    d = 200
    k = int(rng.integers(3, 8))
    base = rng.standard_normal((d, k))
    scale = 10.0 ** -rng.uniform(2, 5)
    X = np.hstack([base, base @ rng.standard_normal((k, 3)) + scale * rng.standard_normal((d, 3))])
    Y = np.hstack([X @ rng.standard_normal((X.shape[1], 4)), rng.standard_normal((d, 2))])
    return X, Y


def matched_at_zero(t: nsm.Thresholds) -> tuple[list[int], list[int]]:
    return np.flatnonzero(t.x <= 0).tolist(), np.flatnonzero(t.y <= 0).tolist()


# Seed 297 gave {0, 1, 2, 3, 5} + {0, 1, 2, 3} at eps = 0 from the thresholds and an empty match
# from max_match(gram, 0.0) when the tolerance came from each entry point's own pivot order.
@pytest.mark.parametrize("seed", [297, 3, 11, 42])
def test_both_entry_points_and_a_permutation_agree_at_eps_zero(seed):
    X, Y = ill_conditioned_layers(seed)
    gram = nsm.Gram.from_arrays(X, Y)
    t = quiet(nsm.match_thresholds, gram)
    m = quiet(nsm.max_match, gram, 0.0)
    assert matched_at_zero(t) == (m.x.tolist(), m.y.tolist())
    several = quiet(nsm.max_match, gram, [0.0, 0.5])[0]
    assert (several.x.tolist(), several.y.tolist()) == (m.x.tolist(), m.y.tolist())
    rng = np.random.default_rng(seed + 1)
    px, py = rng.permutation(X.shape[1]), rng.permutation(Y.shape[1])
    tp = quiet(nsm.match_thresholds, X[:, px], Y[:, py])
    # The same neurons match at eps = 0; other critical eps move by the rounding of spans this
    # ill-conditioned (about 1e-8 here), not by a tolerance.
    assert (tp.x[np.argsort(px)] <= 0).tolist() == (t.x <= 0).tolist()
    assert (tp.y[np.argsort(py)] <= 0).tolist() == (t.y <= 0).tolist()
    assert np.allclose(tp.x, t.x[px], atol=1e-6, rtol=0) and np.allclose(tp.y, t.y[py], atol=1e-6, rtol=0)


@pytest.mark.parametrize("seed", [297, 3, 11, 42])
def test_the_torch_engine_uses_the_same_tolerance(seed):
    pytest.importorskip("torch", reason="the torch extra is not installed")
    gram = nsm.Gram.from_arrays(*ill_conditioned_layers(seed))
    t = quiet(nsm.match_thresholds, gram)
    tt = quiet(nsm.match_thresholds, gram, engine="torch")
    assert matched_at_zero(tt) == matched_at_zero(t)
    mt = quiet(nsm.max_match, gram, 0.0, engine="torch")
    assert (mt.x.tolist(), mt.y.tolist()) == matched_at_zero(t)


# Hypothesis found these (tests/test_match.py::test_hypothesis_matches_oracle): 10 samples, 10 +
# 10 full-rank neurons (multiples of 1/64), cond(C_XX) about 1e6. Every ratio is 0, yet
# max_match(gram, 0.0) and max_match(gram, 1e-5) matched nothing when the zero tolerance came
# from each entry point's own pivot order: one eps orders the first factors by a bound
# (FirstOrder::bound), whose X factor's smallest pivot² was 5e-5 (tolerance 8.8e-11), and a Y
# residual against X's span of 1.1e-10 then left, and the cascade emptied both layers; several
# eps (FirstOrder::exact) got a smallest pivot² of 1.1e-6 (tolerance 3.9e-9) and matched all.
ONE_EPS_X = [
    [166, 88, 0, 0, 40, 156, 95, 70, 0, 20],
    [0, 0, 0, 61, 0, 0, 0, 0, 17, 36],
    [18, 72, 61, 0, 57, 304, 41, 67, 28, 13],
    [0, 187, 31, 0, 116, 166, 62, 98, 72, 0],
    [230, 0, 0, 87, 0, 268, 190, 0, 0, 18],
    [165, 0, 0, 0, 27, 88, 86, 119, 0, 18],
    [213, 0, 29, 38, 0, 209, 151, 55, 0, 79],
    [0, 42, 56, 0, 43, 174, 19, 0, 55, 6],
    [80, 0, 0, 82, 0, 0, 0, 0, 0, 0],
    [0, 0, 4, 0, 0, 0, 0, 0, 0, 0],
]
ONE_EPS_Y = [
    [0, 0, 10, 123, 39, 120, 0, 0, 177, 175],
    [0, 64, 0, 78, 78, 70, 0, 20, 45, 0],
    [185, 0, 61, 0, 0, 0, 0, 0, 0, 0],
    [97, 2, 86, 0, 0, 34, 3, 4, 11, 73],
    [0, 0, 0, 35, 0, 0, 0, 0, 20, 0],
    [0, 0, 0, 116, 0, 97, 0, 0, 145, 142],
    [0, 0, 0, 39, 0, 4, 0, 0, 101, 13],
    [280, 78, 80, 0, 0, 0, 2, 62, 0, 0],
    [0, 0, 0, 72, 13, 52, 0, 0, 22, 0],
    [0, 169, 21, 3, 57, 0, 0, 20, 0, 21],
]


def below(t: nsm.Thresholds, eps: float) -> tuple[list[int], list[int]]:
    return np.flatnonzero(t.x <= eps).tolist(), np.flatnonzero(t.y <= eps).tolist()


def test_one_eps_and_several_eps_agree_on_the_hypothesis_case():
    X, Y = np.array(ONE_EPS_X) / 64.0, np.array(ONE_EPS_Y) / 64.0
    gram = nsm.Gram.from_arrays(X, Y)
    t = quiet(nsm.match_thresholds, gram)
    assert below(t, 0.0) == (list(range(10)), list(range(10)))
    several = quiet(nsm.max_match, gram, [0.0, 1e-5, 0.5])
    for eps, m in zip([0.0, 1e-5, 0.5], several):
        one = quiet(nsm.max_match, gram, eps)
        assert (one.x.tolist(), one.y.tolist()) == (m.x.tolist(), m.y.tolist()) == below(t, eps)


def test_the_bound_ordered_first_state_of_the_hypothesis_case_has_zero_ratios():
    # The first state of a one-eps max_match: both layers' factors ordered by nearest_other's
    # bound. Its tolerances are those of the exactly ordered state, so every ratio is 0 in both.
    X, Y = np.array(ONE_EPS_X) / 64.0, np.array(ONE_EPS_Y) / 64.0
    g = nsm.Gram.from_arrays(X, Y)
    engine = _core.MatchEngine(g.matrix, g.n_x, g.n_samples, 1e-12, 0.0, 1)
    for first_order in ("exact", "bound"):
        assert _core._testing.Peeler(engine, first_order).ratios().tolist() == [0.0] * 20
    with pytest.raises(ValueError, match="first_order"):
        _core._testing.Peeler(engine, "guess")


def square_ill_conditioned_layers(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n samples, n + n neurons (6 <= n <= 12), post-ReLU-like values in multiples of 1/64; X has
    one neuron close to a combination of the others (cond(C_XX) about 1e4 to 1e7), Y sometimes."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(6, 13))

    def layer(ill: bool) -> np.ndarray:
        a = np.maximum(rng.standard_normal((n, n)) * 1.5 + rng.uniform(-1.5, 0.5), 0.0)
        a = np.round(a * 64) / 64
        if ill:
            j = rng.integers(n)
            w = rng.uniform(0, 1, n)
            w[j] = 0
            near = a @ w + 10.0 ** -rng.uniform(1, 3) * rng.standard_normal(n)
            a[:, j] = np.round(near * 64) / 64
        for j in np.flatnonzero(~a.any(axis=0)):
            a[rng.integers(n), j] = 1.0
        return a

    return layer(True), layer(bool(rng.random() < 0.5))


def within_the_clamp(gram: nsm.Gram) -> bool:
    """Both layers full rank with a zero tolerance below its clamp sqrt(rank_tol): there the
    tolerance covers a residual's rounding in every pivot order. (Past the clamp, cond(C_BB) >
    1 / sqrt(rank_tol), rounding can exceed it and the entry points may differ: docs/method.md.)"""
    n_x = gram.n_x
    rank_tol = np.finfo(float).eps * max(gram.n_samples, gram.matrix.shape[0])
    d = np.sqrt(np.diag(gram.matrix))
    c = gram.matrix / np.outer(d, d)
    for block in (c[:n_x, :n_x], c[n_x:, n_x:]):
        if np.linalg.eigvalsh(block)[0] <= 1e-12:
            return False
        if rank_tol * np.diag(np.linalg.inv(block)).max() >= np.sqrt(rank_tol):
            return False
    return True


def test_one_eps_max_match_agrees_with_thresholds_on_square_ill_conditioned_layers():
    checked = 0
    for seed in range(250):
        X, Y = square_ill_conditioned_layers(seed)
        if not within_the_clamp(nsm.Gram.from_arrays(X, Y)):
            continue
        rng = np.random.default_rng(seed + 10_000)
        for _ in range(3):
            px, py = rng.permutation(X.shape[1]), rng.permutation(Y.shape[1])
            gram = nsm.Gram.from_arrays(X[:, px], Y[:, py])
            t = quiet(nsm.match_thresholds, gram)
            for eps in (0.0, 1e-5):
                m = quiet(nsm.max_match, gram, eps)
                assert (m.x.tolist(), m.y.tolist()) == below(t, eps), (seed, px.tolist(), py.tolist(), eps)
                checked += 1
    assert checked > 500
