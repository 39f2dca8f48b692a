"""Jackknife error bars: leave-one-group-out Grams against Grams of the remaining rows, the se
against a plain NumPy jackknife, the interval arithmetic, and bad ``groups``."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

import nsm
from nsm.jackknife import jackknife_se, normal_interval
from tests.cases import related_layers


def _blocks(d: int, k: int) -> list[np.ndarray]:
    """Row indices of the K contiguous blocks Gram.from_arrays deals (block i: i*d//K ...)."""
    return [np.arange(i * d // k, (i + 1) * d // k) for i in range(k)]


def _numpy_cka(X: np.ndarray, Y: np.ndarray) -> float:
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    return float(np.linalg.norm(Xc.T @ Yc) ** 2 / (np.linalg.norm(Xc.T @ Xc) * np.linalg.norm(Yc.T @ Yc)))


def _numpy_jackknife(values: list[float]) -> float:
    t = np.asarray(values)
    k = len(t)
    return math.sqrt((k - 1) / k * float(np.sum((t - t.mean()) ** 2)))


@pytest.fixture
def layers(rng):
    return related_layers(rng, 1003, 7, 5)


def test_array_groups_leave_out_contiguous_blocks(layers):
    X, Y = layers
    g = nsm.Gram.from_arrays(X, Y, groups=4)
    assert g.groups == 4 and g.group_sizes.tolist() == [250, 251, 251, 251]
    A = np.hstack([X, Y])
    for rows, loo in zip(_blocks(len(X), 4), g.leave_one_out()):
        rest = np.delete(A, rows, axis=0)
        assert loo.groups is None and loo.n_samples == len(rest)
        np.testing.assert_allclose(loo.matrix, rest.T @ rest, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(loo.column_sums, rest.sum(0), rtol=1e-12, atol=1e-9)
    # The total is the Gram of every row, exactly as without groups.
    np.testing.assert_allclose(g.matrix, A.T @ A, rtol=1e-12)


def test_streamed_batches_are_dealt_round_robin(layers):
    X, Y = layers
    edges = [0, 100, 130, 400, 401, 650, 900, 1003]  # 7 batches of unequal sizes
    g = nsm.Gram(7, 5, groups=3)
    for a, b in zip(edges[:-1], edges[1:]):
        g.update(X[a:b], Y[a:b])
    batch_of_row = np.searchsorted(edges, np.arange(len(X)), side="right") - 1
    group_of_row = batch_of_row % 3
    A = np.hstack([X, Y])
    assert g.group_sizes.tolist() == [int(np.sum(group_of_row == k)) for k in range(3)]
    for k, loo in enumerate(g.leave_one_out()):
        rest = A[group_of_row != k]
        np.testing.assert_allclose(loo.matrix, rest.T @ rest, rtol=1e-12, atol=1e-9)
        assert loo.n_samples == len(rest)


def test_leave_out_thresholds_equal_those_of_the_remaining_rows(layers):
    X, Y = layers
    t = nsm.match_thresholds(X, Y, groups=5)
    assert t.groups == 5
    for rows, lo in zip(_blocks(len(X), 5), t.leave_out):
        direct = nsm.match_thresholds(np.delete(X, rows, 0), np.delete(Y, rows, 0))
        np.testing.assert_allclose(lo.x, direct.x, atol=1e-9)
        np.testing.assert_allclose(lo.y, direct.y, atol=1e-9)
    # The point value is the full-data one.
    full = nsm.match_thresholds(X, Y)
    np.testing.assert_array_equal(t.x, full.x)
    np.testing.assert_array_equal(t.similarity([0.2, 0.5]), full.similarity([0.2, 0.5]))


def test_centred_leave_out_thresholds_are_those_of_the_remaining_rows_centred(layers):
    # centered= and groups= together: each leave-one-out Gram is centred on its own rows' means
    # (from its own column sums), as the remaining rows centred by hand.
    X, Y = layers
    t = nsm.match_thresholds(X, Y, groups=4, centered=True)
    assert t.centered and all(lo.centered for lo in t.leave_out)
    for rows, lo in zip(_blocks(len(X), 4), t.leave_out):
        Xr, Yr = np.delete(X, rows, 0), np.delete(Y, rows, 0)
        direct = nsm.match_thresholds(Xr - Xr.mean(0), Yr - Yr.mean(0))
        np.testing.assert_allclose(lo.x, direct.x, atol=1e-7)
        np.testing.assert_allclose(lo.y, direct.y, atol=1e-7)


def test_similarity_se_and_interval_against_a_numpy_jackknife(layers):
    X, Y = layers
    k = 6
    t = nsm.match_thresholds(X, Y, groups=k)
    eps = np.array([0.1, 0.3, 0.5])
    sims = []
    for rows in _blocks(len(X), k):
        # The similarity of the remaining rows, counted by hand from their thresholds.
        lo = nsm.match_thresholds(np.delete(X, rows, 0), np.delete(Y, rows, 0))
        every = np.concatenate([lo.x, lo.y])
        sims.append([np.sum(every <= e) / len(every) for e in eps])
    sims_arr = np.array(sims)
    expected = [_numpy_jackknife(sims_arr[:, j].tolist()) for j in range(len(eps))]
    se = t.similarity_se(eps)
    assert se.shape == eps.shape
    np.testing.assert_allclose(se, expected, rtol=1e-12, atol=1e-15)
    assert isinstance(t.similarity_se(0.3), float)
    low, high = t.similarity_interval(eps)
    z = NormalDist().inv_cdf(0.975)
    np.testing.assert_allclose(low, t.similarity(eps) - z * se)
    np.testing.assert_allclose(high, t.similarity(eps) + z * se)
    low90, high90 = t.similarity_interval(0.3, level=0.9)
    assert high90 - low90 == pytest.approx(2 * 1.6448536269514722 * se[1])


def test_linear_cka_estimate_against_a_numpy_jackknife(layers):
    X, Y = layers
    e = nsm.measures.linear_cka(X, Y, groups=8)
    assert isinstance(e, nsm.Estimate)
    loo = [_numpy_cka(np.delete(X, r, 0), np.delete(Y, r, 0)) for r in _blocks(len(X), 8)]
    assert e.value == pytest.approx(_numpy_cka(X, Y), rel=1e-10)
    assert e.se == pytest.approx(_numpy_jackknife(loo), rel=1e-8)
    z = NormalDist().inv_cdf(0.975)
    assert (e.low, e.high) == pytest.approx((e.value - z * e.se, e.value + z * e.se))
    assert isinstance(nsm.measures.linear_cka(X, Y), float)


def test_match_auc_estimate_against_a_numpy_jackknife(layers):
    X, Y = layers
    e = nsm.measures.match_auc(X, Y, groups=4)
    assert isinstance(e, nsm.Estimate)
    loo = []
    for rows in _blocks(len(X), 4):
        lo = nsm.match_thresholds(np.delete(X, rows, 0), np.delete(Y, rows, 0))
        every = np.concatenate([lo.x, lo.y])
        loo.append(float(np.sum(1 - np.clip(every[np.isfinite(every)], 0, 1)) / len(every)))
    assert e.value == pytest.approx(nsm.measures.match_auc(X, Y), rel=1e-12)
    assert e.se == pytest.approx(_numpy_jackknife(loo), rel=1e-8)
    # From thresholds kept with groups, the same estimate.
    assert nsm.measures.match_auc(nsm.match_thresholds(X, Y, groups=4)) == pytest.approx(tuple(e))
    # The bias-corrected centre K value - (K - 1) mean, with the same se.
    c = nsm.measures.match_auc(X, Y, groups=4, correct_bias=True)
    assert c.value == pytest.approx(4 * e.value - 3 * np.mean(loo), rel=1e-10)
    assert c.se == e.se and c.high - c.value == pytest.approx(e.high - e.value)
    with pytest.raises(ValueError, match="correct_bias=True needs jackknife groups"):
        nsm.measures.match_auc(X, Y, correct_bias=True)
    with pytest.raises(TypeError, match="correct_bias"):
        nsm.measures.match_auc(X, Y, groups=4, correct_bias="yes")


@pytest.mark.parametrize("measure", ["linear_cka", "cca", "svcca", "procrustes", "match_auc"])
def test_every_measure_gives_an_estimate_with_groups(layers, measure):
    X, Y = layers
    f = getattr(nsm.measures, measure)
    plain = f(X, Y)
    e = f(X, Y, groups=5)
    assert isinstance(e, nsm.Estimate) and e.value == pytest.approx(plain, rel=1e-10)
    assert e.se > 0 and e.low < e.value < e.high
    # A Gram built with groups gives the same estimate without the argument.
    g = nsm.Gram.from_arrays(X, Y, groups=5, precision="float64")
    assert tuple(f(g)) == pytest.approx(tuple(e), rel=1e-9)
    assert tuple(f(g, groups=5)) == pytest.approx(tuple(e), rel=1e-9)


def test_jackknife_se_and_interval_arithmetic():
    assert jackknife_se([1.0, 2.0, 3.0]) == pytest.approx(math.sqrt(2 / 3 * 2))
    rows = np.array([[1.0, 0.0], [3.0, 0.0], [5.0, 0.0], [7.0, 0.0]])
    np.testing.assert_allclose(jackknife_se(rows), [_numpy_jackknife([1, 3, 5, 7]), 0.0])
    low, high = normal_interval(np.array([0.2, 0.8]), np.array([0.1, 0.0]), level=0.5)
    z = NormalDist().inv_cdf(0.75)
    np.testing.assert_allclose(low, [0.2 - z * 0.1, 0.8])
    np.testing.assert_allclose(high, [0.2 + z * 0.1, 0.8])
    with pytest.raises(ValueError, match="at least 2"):
        jackknife_se([1.0])
    for level in (0, 1, 1.5, -0.1):
        with pytest.raises(ValueError, match="level"):
            normal_interval(0.5, 0.1, level=level)
    with pytest.raises(TypeError, match="level"):
        normal_interval(0.5, 0.1, level="95%")
    assert f"{nsm.Estimate(0.5, 0.0123, 0.47, 0.53)}" == "0.500 ± 0.012"


@pytest.mark.parametrize("groups", [1, 0, -3])
def test_groups_below_two_are_refused(layers, groups):
    X, Y = layers
    with pytest.raises(ValueError, match="groups must be >= 2"):
        nsm.Gram.from_arrays(X, Y, groups=groups)
    with pytest.raises(ValueError, match="groups must be >= 2"):
        nsm.measures.linear_cka(X, Y, groups=groups)


@pytest.mark.parametrize("groups", [2.0, "4", True, np.float64(3)])
def test_groups_that_are_not_ints_are_refused(layers, groups):
    X, Y = layers
    with pytest.raises(TypeError, match="groups must be None or an int"):
        nsm.match_thresholds(X, Y, groups=groups)
    with pytest.raises(TypeError, match="groups must be None or an int"):
        nsm.Gram(2, 2, groups=groups)


def test_more_groups_than_rows_or_batches_is_an_error_not_a_nan(rng):
    X, Y = rng.random((5, 2)), rng.random((5, 2))
    with pytest.raises(ValueError, match="groups=6 needs at least 6 samples"):
        nsm.Gram.from_arrays(X, Y, groups=6)
    g = nsm.Gram(2, 2, groups=4)
    for _ in range(3):
        g.update(rng.random((50, 2)), rng.random((50, 2)))
    with pytest.raises(ValueError, match=r"groups=4 but group\(s\) \[3\] got no samples"):
        g.leave_one_out()
    with pytest.raises(ValueError, match="groups="):
        nsm.match_thresholds(g)
    with pytest.raises(ValueError, match="groups="):
        nsm.measures.linear_cka(g)
    # A batch without samples (nsm.torch: every token masked) takes no group's turn.
    g.update_views(np.zeros((0, 2)), np.zeros((0, 2)))
    g.update(rng.random((50, 2)), rng.random((50, 2)))
    assert g.group_sizes.tolist() == [50, 50, 50, 50]
    assert len(g.leave_one_out()) == 4


def test_error_bars_without_groups_say_to_pass_groups(layers):
    X, Y = layers
    t = nsm.match_thresholds(X, Y)
    with pytest.raises(ValueError, match="pass groups="):
        t.similarity_se(0.5)
    with pytest.raises(ValueError, match="pass groups="):
        t.similarity_interval(0.5)
    with pytest.raises(ValueError, match="groups=K"):
        nsm.Gram.from_arrays(X, Y).leave_one_out()


def test_groups_cannot_split_a_summed_gram(layers):
    X, Y = layers
    plain = nsm.Gram.from_arrays(X, Y)
    with pytest.raises(ValueError, match="cannot split a Gram that has no groups"):
        nsm.match_thresholds(plain, groups=4)
    with pytest.raises(ValueError, match="cannot split a Gram that has 3 groups"):
        nsm.measures.cca(nsm.Gram.from_arrays(X, Y, groups=3), groups=4)
    with pytest.raises(ValueError, match="thresholds have no groups"):
        nsm.measures.match_auc(nsm.match_thresholds(plain), groups=4)


def test_merge_is_group_by_group_and_save_load_keeps_groups(layers, tmp_path):
    X, Y = layers
    a, b = nsm.Gram(7, 5, groups=2), nsm.Gram(7, 5, groups=2)
    for start in range(0, 400, 100):
        a.update(X[start : start + 100], Y[start : start + 100])
    for start in range(400, 1000, 200):
        b.update(X[start : start + 200], Y[start : start + 200])
    m = a + b
    assert m.groups == 2 and m.n_samples == 1000
    groups = [np.r_[0:100, 200:300, 400:600, 800:1000], np.r_[100:200, 300:400, 600:800]]
    A = np.hstack([X, Y])
    for rows, loo in zip(groups, m.leave_one_out()):
        rest = np.delete(A[:1000], rows, axis=0)
        np.testing.assert_allclose(loo.matrix, rest.T @ rest, rtol=1e-12, atol=1e-9)
    with pytest.raises(ValueError, match="groups=2 and one with groups=None"):
        a.merge(nsm.Gram.from_arrays(X, Y))
    path = tmp_path / "g.npz"
    m.save(path)
    back = nsm.Gram.load(path)
    assert back.groups == 2 and back.group_sizes.tolist() == m.group_sizes.tolist()
    for x, y in zip(back.leave_one_out(), m.leave_one_out()):
        np.testing.assert_array_equal(x.matrix, y.matrix)
    # The next batch continues the round-robin where it stopped.
    assert back.parts().dealt == m.parts().dealt == 7
    # A file whose groups do not add up to its Gram is refused.
    with np.load(path) as f:
        fields = dict(f)
    fields["group_counts"] = fields["group_counts"] + 1
    bad = tmp_path / "bad.npz"
    np.savez(bad, **fields)
    with pytest.raises(ValueError, match="do not add up"):
        nsm.Gram.load(bad)
    del fields["group_dealt"]
    np.savez(bad, **fields)
    with pytest.raises(ValueError, match="missing group_dealt"):
        nsm.Gram.load(bad)


def test_nothing_passed_is_modified_and_repr_names_groups(layers):
    X, Y = layers
    X0, Y0 = X.copy(), Y.copy()
    nsm.measures.procrustes(X, Y, groups=3)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(Y, Y0)
    assert "groups=3" in repr(nsm.Gram.from_arrays(X, Y, groups=3))
    assert "groups=3" in repr(nsm.match_thresholds(X, Y, groups=3))


def test_updates_from_threads_deal_each_batch_to_one_group(rng):
    import threading

    batches = [(rng.random((40 + i, 4)), rng.random((40 + i, 3))) for i in range(24)]
    g = nsm.Gram(4, 3, groups=5)

    def work(part):
        for X, Y in part:
            g.update(X, Y, num_threads=1)

    threads = [threading.Thread(target=work, args=(batches[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    A = np.vstack([np.hstack(b) for b in batches])
    np.testing.assert_allclose(g.matrix, A.T @ A, rtol=1e-12)
    sizes = g.group_sizes
    assert sizes.sum() == len(A) and g.parts().dealt == 24
    # The groups partition the samples: the leave-one-out Grams add up to (K - 1) totals.
    total = sum(h.matrix for h in g.leave_one_out())
    np.testing.assert_allclose(total, 4 * g.matrix, rtol=1e-12)
