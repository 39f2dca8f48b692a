"""Saved files of every format, written by an earlier version (tests/fixtures/), still load to the
same objects: Grams against their activations' Grams computed here with NumPy, comparisons against
the activations' Grams extracted by hand with forward hooks and the rows the files were made from
(tests/fixtures/make_fixtures.py wrote them)."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

import nsm

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def fixture(name: str) -> str:
    return os.path.join(HERE, name)


def activations() -> np.ndarray:
    # tests/fixtures/make_fixtures.py's arrays(0), rebuilt here from the same seed.
    rng = np.random.default_rng(0)
    X = np.maximum(rng.standard_normal((60, 5)), 0)
    Y = np.hstack([X[:, :2] @ rng.standard_normal((2, 2)), rng.standard_normal((60, 2))])
    return np.hstack([X, Y])


def reference() -> dict:
    with open(fixture("reference.json"), encoding="utf-8") as f:
        return json.load(f)


# Columns added since the fixtures were written, and what a file without them gives.
ADDED_COLUMNS = {"precision": None}


def same_rows(got: list[dict], expected: list[dict]) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert set(g) == set(e) | set(ADDED_COLUMNS)
        assert {k: g[k] for k in ADDED_COLUMNS} == ADDED_COLUMNS
        for key, value in e.items():
            if isinstance(value, float) or value is None:
                gv = g[key]
                if value is None or (isinstance(gv, float) and math.isnan(gv)):
                    assert gv is None or math.isnan(gv), key
                else:
                    assert gv == pytest.approx(value, rel=1e-12, abs=1e-12), key
            else:
                assert g[key] == value, key


def test_a_saved_gram_loads_to_its_activations_gram() -> None:
    A = activations()
    g = nsm.Gram.load(fixture("gram.npz"))
    assert (g.n_x, g.n_y, g.n_samples, g.groups, g.precision) == (5, 4, 60, None, "float64")
    np.testing.assert_allclose(g.matrix, A.T @ A, rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(g.column_sums, A.sum(axis=0), rtol=1e-13, atol=1e-12)


def test_a_saved_grouped_gram_keeps_its_groups() -> None:
    A = activations()
    g = nsm.Gram.load(fixture("gram_groups.npz"))
    assert g.groups == 3
    np.testing.assert_array_equal(g.group_sizes, [20, 20, 20])
    for k, h in enumerate(g.leave_one_out()):
        rest = np.delete(A, np.s_[20 * k : 20 * (k + 1)], axis=0)
        np.testing.assert_allclose(h.matrix, rest.T @ rest, rtol=1e-12, atol=1e-11)


def test_a_saved_mixed_gram_keeps_its_precision() -> None:
    A = activations().astype(np.float32).astype(np.float64)
    g = nsm.Gram.load(fixture("gram_mixed.npz"))
    assert g.precision == "mixed"
    np.testing.assert_allclose(g.matrix, A.T @ A, rtol=1e-5, atol=1e-4)


def test_a_saved_gram_without_sums_still_refuses_the_centred_match() -> None:
    A = activations()
    g = nsm.Gram.load(fixture("gram_no_sums.npz"))
    np.testing.assert_allclose(g.matrix, A.T @ A, rtol=1e-13, atol=1e-12)
    with pytest.raises(ValueError, match="column sums"):
        nsm.match_thresholds(g, centered=True)


def test_a_saved_comparison_loads_to_the_same_results_and_grams() -> None:
    ref, hand = reference(), np.load(fixture("reference.npz"))
    path = fixture("report.json")
    c = nsm.Comparison.load(path)
    with open(path, encoding="utf-8") as f:
        assert c.to_dict() == json.load(f)
    same_rows(c.to_rows(), ref["report_rows"])
    for site in ("1", "3"):
        lc = c[site]
        assert lc.gram is not None and lc.gram.groups == 2
        np.testing.assert_allclose(lc.gram.matrix, hand[f"pair_{site}_{site}"], rtol=1e-12, atol=1e-12)
        assert lc.baseline_gram is not None


def test_a_saved_grid_loads_to_the_same_matrices_and_grams() -> None:
    ref, hand = reference(), np.load(fixture("reference.npz"))
    path = fixture("cross.json")
    grid = nsm.CrossComparison.load(path)
    with open(path, encoding="utf-8") as f:
        assert grid.to_dict() == json.load(f)
    np.testing.assert_allclose(grid.matrix("match_auc"), ref["cross_match_auc"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grid.matrix("linear_cka"), ref["cross_linear_cka"], rtol=1e-12, atol=1e-12)
    for site in ("1", "3"):
        lc = grid.pair(site, site)
        assert lc.gram is not None
        np.testing.assert_allclose(lc.gram.matrix, hand[f"pair_{site}_{site}"], rtol=1e-12, atol=1e-12)
