"""The zero tolerance (docs/method.md, "The zero tolerance") does not depend on the order of
the first factor: the same layers give the same matches through both entry points of the core
(thresholds, one-eps max_match), with their neurons permuted, and in the torch engine."""

from __future__ import annotations

import numpy as np
import pytest

import nsm
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
