"""CrossComparison (every site against every site) and the tables of Comparison: values against
plain definitions on the activations, pairs that could not be compared, save/load, CSV, pandas."""

from __future__ import annotations

import csv
import math
import os
import warnings
from collections.abc import Mapping

import numpy as np
import pytest

import nsm
from nsm import measures
from nsm.results import MATRIX_MEASURES, Comparison, CrossComparison, LayerComparison
from tests import oracle
from tests.cases import related_layers
from tests.test_measures import REFERENCES

D = 400


@pytest.fixture
def sites(rng):
    """Activations of three sites of A and three of B on the same D samples (B's "tok" cannot
    share samples with A's "spatial" site), and a shifted copy of B for the baselines."""
    X1, Y1 = related_layers(rng, D, 6, 5)
    X2, Y2 = related_layers(rng, D, 4, 7)
    acts_a = {"net.block1.relu": X1, "net.block2.relu": X2, "net.spatial": np.abs(X1[:, :3] - X2[:, :3])}
    acts_b = {"net.block1.relu": Y1, "net.block2.relu": Y2, "net.tok": np.hstack([Y1[:, :2], Y2[:, :2]])}
    return acts_a, acts_b


def build(acts_a, acts_b, baselines=True, **kwargs):
    grams, reasons, bases = {}, {}, {}
    for a, X in acts_a.items():
        for b, Y in acts_b.items():
            if a == "net.spatial" and b == "net.tok":
                grams[(a, b)] = None
                reasons[(a, b)] = "a token site against a spatial site"
                continue
            grams[(a, b)] = nsm.Gram.from_arrays(X, Y)
            if baselines and b != "net.block2.relu":
                bases[(a, b)] = nsm.Gram.from_arrays(X, np.roll(Y, 50, axis=0))
    return CrossComparison(list(acts_a), list(acts_b), grams, reasons=reasons, baselines=bases, **kwargs)


@pytest.mark.parametrize("measure", sorted(REFERENCES))
def test_matrix_equals_the_definition_on_each_pair(sites, measure):
    acts_a, acts_b = sites
    cc = build(acts_a, acts_b)
    m = cc.matrix(measure)
    assert m.shape == (3, 3)
    for i, (a, X) in enumerate(acts_a.items()):
        for j, (b, Y) in enumerate(acts_b.items()):
            if (a, b) == ("net.spatial", "net.tok"):
                assert math.isnan(m[i, j])
            else:
                assert m[i, j] == pytest.approx(REFERENCES[measure](X, Y), rel=1e-9)


def test_similarity_match_auc_and_gap(sites):
    acts_a, acts_b = sites
    cc = build(acts_a, acts_b)
    sim, gap = cc.matrix("similarity", eps=0.4), cc.matrix("similarity_gap", eps=0.4)
    auc = cc.matrix("match_auc")
    for i, (a, X) in enumerate(acts_a.items()):
        for j, (b, Y) in enumerate(acts_b.items()):
            if (a, b) == ("net.spatial", "net.tok"):
                assert np.isnan([sim[i, j], gap[i, j], auc[i, j]]).all()
                continue
            mx, my = oracle.max_match(X, Y, 0.4)
            assert sim[i, j] == pytest.approx((len(mx) + len(my)) / (X.shape[1] + Y.shape[1]))
            assert auc[i, j] == pytest.approx(measures.match_auc(X, Y), rel=1e-12)
            if b == "net.block2.relu":  # no baseline given for this column
                assert math.isnan(gap[i, j])
            else:
                bx, by = oracle.max_match(X, np.roll(Y, 50, axis=0), 0.4)
                base = (len(bx) + len(by)) / (X.shape[1] + Y.shape[1])
                assert gap[i, j] == pytest.approx(sim[i, j] - base)


def test_values_are_computed_once(sites, monkeypatch):
    calls = []
    original = measures.centered_measures

    def counting(gram, which, keep, names, caches):
        calls.append(which)
        return original(gram, which, keep, names, caches)

    monkeypatch.setattr("nsm.results.cross.centered_measures", counting)
    cc = build(*sites)
    first = cc.matrix("cca")
    assert len(calls) == 8  # every compared pair once, CCA/SVCCA/Procrustes together
    assert np.array_equal(cc.matrix("svcca"), cc.matrix("svcca"), equal_nan=True) and len(calls) == 8
    first[0, 0] = -1.0  # a returned matrix is the caller's to change
    assert cc.matrix("cca")[0, 0] != -1.0


def test_each_site_is_decomposed_once_per_matrix(sites, monkeypatch):
    acts_a, acts_b = sites
    cc = build(acts_a, acts_b)
    eighs = []
    original = np.linalg.eigh

    def counting(a, *args, **kwargs):
        eighs.append(a.shape)
        return original(a, *args, **kwargs)

    monkeypatch.setattr(np.linalg, "eigh", counting)
    m = cc.matrix("svcca")
    # One scaled and one unscaled decomposition per site of A (per row) and per site of B,
    # not per pair (8 pairs would take 32).
    assert len(eighs) == 2 * (3 + 3)
    monkeypatch.setattr(np.linalg, "eigh", original)
    for i, (a, X) in enumerate(acts_a.items()):
        for j, (b, Y) in enumerate(acts_b.items()):
            if (a, b) != ("net.spatial", "net.tok"):
                assert m[i, j] == measures.svcca(X, Y)


def test_a_site_without_variance_gives_nan_naming_it(sites):
    acts_a, acts_b = sites
    acts_a = dict(acts_a, **{"net.dead": np.zeros((D, 3))})
    acts_b = {"net.block1.relu": acts_b["net.block1.relu"]}
    cc = CrossComparison(
        list(acts_a),
        list(acts_b),
        {
            (a, "net.block1.relu"): nsm.Gram.from_arrays(X, acts_b["net.block1.relu"])
            for a, X in acts_a.items()
        },
    )
    with pytest.warns(nsm.NsmWarning, match="layer 'net.dead' \\(X\\) has no variance"):
        m = cc.matrix("linear_cka")
    assert np.isnan(m[3, 0]) and np.isfinite(m[:3, 0]).all()
    with pytest.warns(nsm.NsmWarning, match="layer 'net.dead' \\(X\\) has no live neuron"):
        assert np.isnan(cc.matrix("match_auc")[3, 0])


def test_pair_is_a_layer_comparison(sites):
    acts_a, acts_b = sites
    cc = build(acts_a, acts_b, eps=[0.2, 0.5])
    lc = cc.pair("net.block1.relu", "net.block2.relu")
    assert isinstance(lc, LayerComparison)
    X, Y = acts_a["net.block1.relu"], acts_b["net.block2.relu"]
    assert lc.name == ("net.block1.relu", "net.block2.relu") and lc.eps == (0.2, 0.5)
    assert np.array_equal(lc.gram.matrix, nsm.Gram.from_arrays(X, Y).matrix)
    mx, my = oracle.max_match(X, Y, 0.5)
    assert lc.max_match(0.5).x.tolist() == mx.tolist() and lc.max_match(0.5).y.tolist() == my.tolist()
    assert math.isnan(lc.baseline(0.5))  # this column has no baseline
    assert cc.pair("net.block1.relu", "net.tok").baseline_gram is not None
    with pytest.raises(ValueError, match="was not compared: a token site against a spatial site"):
        cc.pair("net.spatial", "net.tok")
    with pytest.raises(KeyError, match="'fc' is not a site of A"):
        cc.pair("fc", "net.tok")
    assert cc.reasons == {("net.spatial", "net.tok"): "a token site against a spatial site"}
    assert not cc.compared("net.spatial", "net.tok") and cc.compared("net.spatial", "net.block1.relu")


class LazyGrams(Mapping):
    """A mapping that makes each Gram when read, and counts the reads (as compare_all's
    grid cuts a pair's Gram out of a larger one on demand)."""

    def __init__(self, acts_a, acts_b, reasons):
        self.acts_a, self.acts_b, self.reasons, self.reads = acts_a, acts_b, reasons, []

    def __getitem__(self, key):
        self.reads.append(key)
        if key in self.reasons:
            return None
        return nsm.Gram.from_arrays(self.acts_a[key[0]], self.acts_b[key[1]])

    def __iter__(self):
        return iter([(a, b) for a in self.acts_a for b in self.acts_b])

    def __len__(self):
        return len(self.acts_a) * len(self.acts_b)


def test_grams_of_a_lazy_mapping_are_read_when_needed(sites):
    acts_a, acts_b = sites
    reasons = {("net.spatial", "net.tok"): "a token site against a spatial site"}
    lazy = LazyGrams(acts_a, acts_b, reasons)
    cc = CrossComparison(list(acts_a), list(acts_b), lazy, reasons=reasons)
    assert lazy.reads == []
    cc.pair("net.block1.relu", "net.tok")
    assert lazy.reads == [("net.block1.relu", "net.tok")]
    expected = build(acts_a, acts_b).matrix("linear_cka")
    np.testing.assert_array_equal(cc.matrix("linear_cka"), expected)
    assert ("net.spatial", "net.tok") not in lazy.reads and len(lazy.reads) == 9
    bad = LazyGrams(acts_a, acts_b, reasons)
    cc = CrossComparison(list(acts_a), list(acts_b), bad)  # no reasons: found when read
    with pytest.raises(ValueError, match="has no Gram: give the reason"):
        cc.matrix("cca")


def test_bad_construction_and_arguments(sites):
    acts_a, acts_b = sites
    g = nsm.Gram.from_arrays(acts_a["net.block1.relu"], acts_b["net.block1.relu"])
    one = {("a", "b"): g}
    with pytest.raises(ValueError, match="no entry for \\('a', 'c'\\)"):
        CrossComparison(["a"], ["b", "c"], one)
    with pytest.raises(ValueError, match="'x' is not in sites_a"):
        CrossComparison(["a"], ["b"], {**one, ("x", "b"): g})
    with pytest.raises(ValueError, match="give the reason"):
        CrossComparison(["a"], ["b"], {("a", "b"): None})
    with pytest.raises(ValueError, match="has a Gram and a reason"):
        CrossComparison(["a"], ["b"], one, reasons={("a", "b"): "why"})
    with pytest.raises(TypeError, match="must be an nsm.Gram or None"):
        CrossComparison(["a"], ["b"], {("a", "b"): np.eye(3)})
    with pytest.raises(ValueError, match="baselines\\[\\('a', 'b'\\)\\] has 2 \\+ 1 neurons"):
        CrossComparison(
            ["a"], ["b"], one, baselines={("a", "b"): nsm.Gram(2, 1).update(np.ones((3, 2)), np.ones((3, 1)))}
        )
    with pytest.raises(ValueError, match="names a site twice: a"):
        CrossComparison(["a", "a"], ["b"], one)
    with pytest.raises(TypeError, match="sites_a must be a list"):
        CrossComparison("a", ["b"], one)
    with pytest.raises(ValueError, match="keep must be in"):
        CrossComparison(["a"], ["b"], one, keep=0)
    cc = CrossComparison(["a"], ["b"], one)
    with pytest.raises(ValueError, match="measure must be one of"):
        cc.matrix("cka")
    with pytest.raises(ValueError, match="needs an eps"):
        cc.matrix("similarity")
    with pytest.raises(ValueError, match="takes no eps"):
        cc.matrix("cca", eps=0.3)
    with pytest.raises(ValueError, match="eps must be finite and in \\[0, 1\\]"):
        cc.matrix("similarity", eps=1.5)
    with pytest.raises(TypeError, match="takes one eps"):
        cc.matrix("similarity_gap", eps=[0.1, 0.2])


@pytest.mark.parametrize("with_grams", [False, True])
def test_save_and_load_keep_every_matrix(sites, tmp_path, with_grams):
    cc = build(*sites, eps=[0.1, 0.3], keep=0.95, info={"samples": "pool"})
    path = tmp_path / "cross.json"
    cc.save(path, grams=with_grams)
    assert (tmp_path / "cross.json.grams.npz").exists() == with_grams
    back = CrossComparison.load(path)
    assert back.sites_a == cc.sites_a and back.sites_b == cc.sites_b and back.eps == (0.1, 0.3)
    assert back.keep == 0.95 and back.info == {"samples": "pool"} and back.reasons == cc.reasons
    assert back.has_grams() == with_grams
    for measure in MATRIX_MEASURES:
        for eps in (0.3, 0.77) if measure.startswith("similarity") else (None,):
            np.testing.assert_array_equal(back.matrix(measure, eps), cc.matrix(measure, eps))
    lc = back.pair("net.block2.relu", "net.block1.relu")
    assert lc.similarity(0.66) == cc.pair("net.block2.relu", "net.block1.relu").similarity(0.66)
    assert (lc.gram is not None) == with_grams
    with pytest.raises(ValueError, match="not an nsm cross comparison"):
        CrossComparison.from_dict({"format": "nsm-comparison"})


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_rows_say_centred_and_starved(rng):
    # The rows had no centered or few_samples column, so a centred grid's CSV read as uncentred.
    X, Y = related_layers(rng, 60, 8, 8)  # 60 samples for 16 neurons: < 4 per neuron
    grams = {("a", "b"): nsm.Gram.from_arrays(X, Y), ("a", "c"): nsm.Gram.from_arrays(X, Y[:, :2])}
    for centered in (False, True):
        rows = CrossComparison(["a"], ["b", "c"], grams, centered=centered).to_rows()
        assert [r["centered"] for r in rows] == [centered, centered]
        # 60 < 4 (8 + 8) = 64; 60 >= 4 (8 + 2) = 40
        assert [r["few_samples"] for r in rows] == [True, False]


def test_to_csv_is_long_format(sites, tmp_path):
    cc = build(*sites, eps=[0.25])
    cc.to_csv(tmp_path / "cross.csv")
    rows = read_csv(tmp_path / "cross.csv")
    assert len(rows) == 9
    assert list(rows[0])[:3] == ["site_a", "site_b", "compared"]
    for measure in ("linear_cka", "cca", "svcca", "procrustes", "match_auc"):
        m = cc.matrix(measure)
        for row in rows:
            i, j = cc.sites_a.index(row["site_a"]), cc.sites_b.index(row["site_b"])
            if math.isnan(m[i, j]):
                assert row[measure] == "nan" and row["compared"] == "False" and row["reason"]
            else:
                assert float(row[measure]) == m[i, j]
    sim = cc.matrix("similarity", eps=0.25)
    gap = cc.matrix("similarity_gap", eps=0.25)
    for row in rows:
        i, j = cc.sites_a.index(row["site_a"]), cc.sites_b.index(row["site_b"])
        assert float(row["similarity_0.25"]) == pytest.approx(sim[i, j], nan_ok=True)
        base = float(row["baseline_0.25"])
        assert sim[i, j] - base == pytest.approx(gap[i, j], nan_ok=True)


def test_to_pandas(sites):
    pd = pytest.importorskip("pandas", reason="pandas is not installed")
    cc = build(*sites)
    df = cc.to_pandas()
    assert isinstance(df, pd.DataFrame) and len(df) == 9
    grid = df.pivot(index="site_a", columns="site_b", values="linear_cka")
    expected = cc.matrix("linear_cka")
    np.testing.assert_array_equal(grid.loc[list(cc.sites_a), list(cc.sites_b)].to_numpy(), expected)


def comparison(rng, with_gram=True):
    layers = {}
    for name, (n_x, n_y) in {"conv1": (6, 5), ("fc_a", "fc_b"): (4, 4)}.items():
        X, Y = related_layers(rng, D, n_x, n_y)
        g = nsm.Gram.from_arrays(X, Y)
        base = nsm.Gram.from_arrays(X, np.roll(Y, 7, axis=0))
        layers[name] = (
            X,
            Y,
            LayerComparison(
                name,
                nsm.match_thresholds(g),
                nsm.match_thresholds(base),
                (0.2, 0.6),
                gram=g if with_gram else None,
            ),
        )
    return layers, Comparison({k: v[2] for k, v in layers.items()}, (0.2, 0.6))


def test_comparison_table_gains_the_measures(rng, tmp_path):
    layers, c = comparison(rng)
    table = c.table()
    head = table.splitlines()[0].split()
    assert "auc" in head and "cka" in head and head.count("auc") == 2  # "auc" and "base auc"
    X, Y, lc = layers["conv1"]
    line = next(line for line in table.splitlines() if line.startswith("conv1"))
    assert f"{REFERENCES['linear_cka'](X, Y):.3f}" in line.split()
    assert f"{measures.match_auc(X, Y):.3f}" in line.split()
    assert lc.baseline_match_auc() == pytest.approx(measures.match_auc(X, np.roll(Y, 7, axis=0)))
    c.save(tmp_path / "c.json")
    loaded = Comparison.load(tmp_path / "c.json")  # without Grams: linear CKA was saved
    assert loaded["conv1"].gram is None and loaded.table() == table
    assert loaded["conv1"].linear_cka() == lc.linear_cka()
    # A file without the value (written before it was saved) shows "-" and cannot compute it.
    d = c.to_dict()
    for item in d["layers"]:
        del item["linear_cka"]
    old = Comparison.from_dict(d)
    line = next(line for line in old.table().splitlines() if line.startswith("conv1"))
    assert f"{measures.match_auc(X, Y):.3f}" in line.split() and " - " in line
    with pytest.raises(ValueError, match="has no Gram"):
        old["conv1"].linear_cka()
    d["layers"][0]["linear_cka"] = 1.5
    with pytest.raises(ValueError, match="linear_cka holds 1.5"):
        Comparison.from_dict(d)


def test_comparison_to_csv_and_pandas(rng, tmp_path):
    layers, c = comparison(rng)
    c.to_csv(tmp_path / "c.csv")
    rows = read_csv(tmp_path / "c.csv")
    assert [r["layer"] for r in rows] == ["conv1", "fc_a / fc_b"]
    assert rows[1]["layer_a"] == "fc_a" and rows[1]["layer_b"] == "fc_b"
    for row, (X, Y, lc) in zip(rows, layers.values()):
        assert float(row["linear_cka"]) == pytest.approx(REFERENCES["linear_cka"](X, Y), rel=1e-9)
        assert float(row["match_auc"]) == pytest.approx(measures.match_auc(X, Y))
        for e in (0.2, 0.6):
            mx, my = oracle.max_match(X, Y, e)
            assert float(row[f"similarity_{e:g}"]) == pytest.approx((len(mx) + len(my)) / (lc.n_x + lc.n_y))
            assert float(row[f"baseline_{e:g}"]) == lc.baseline(e)
        assert float(row["baseline_match_auc"]) == lc.baseline_match_auc()
    _, without = comparison(rng, with_gram=False)  # never had a Gram: CKA unknown
    assert all(
        r["linear_cka"] == "nan"
        for r in (without.to_csv(tmp_path / "w.csv"), read_csv(tmp_path / "w.csv"))[1]
    )
    pd = pytest.importorskip("pandas", reason="pandas is not installed")
    df = c.to_pandas()
    assert isinstance(df, pd.DataFrame) and list(df["layer"]) == ["conv1", "fc_a / fc_b"]


# ---- pairs computed side by side ---------------------------------------------------------------


def starved_grams(rng, groups=None):
    """Six sites of 40 random neurons on 60 samples: every pair is starved (60 <= 80)."""
    acts = {f"s{i}": rng.standard_normal((60, 40)) for i in range(6)}
    sites = list(acts)
    grams = {(a, b): nsm.Gram.from_arrays(acts[a], acts[b], groups=groups) for a in sites for b in sites}
    return sites, grams


@pytest.mark.parametrize("groups", [None, 4])
def test_threaded_thresholds_warn_once_per_starved_pair_and_leave_the_filters_alone(
    rng, groups, engine_rule_of_users
):
    # The pairs' thresholds run in worker threads; warnings.catch_warnings there (the
    # leave-one-out peelings' quiet block) raced across threads, left "ignore FewSamplesWarning"
    # in the process's filters and lost or misrouted pairs' warnings.
    sites, grams = starved_grams(rng, groups)
    filters = list(warnings.filters)
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        values = CrossComparison(sites, sites, grams).matrix("match_auc")
    assert warnings.filters == filters
    few = [w for w in got if issubclass(w.category, nsm.FewSamplesWarning)]
    assert len(few) == len(grams)
    assert {os.path.basename(w.filename) for w in few} == {os.path.basename(__file__)}
    for i, a in enumerate(sites):
        for j, b in enumerate(sites):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", nsm.FewSamplesWarning)
                expected = nsm.measures.match_auc(nsm.match_thresholds(grams[(a, b)]))
            assert values[i, j] == (expected.value if groups else expected)
    with pytest.warns(nsm.FewSamplesWarning):  # still warns afterwards
        nsm.match_thresholds(grams[(sites[0], sites[1])])


def test_se_without_groups_raises_before_computing_every_pair(rng):
    sites, grams = starved_grams(rng)
    cc = CrossComparison(sites, sites, grams)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", nsm.FewSamplesWarning)
        with pytest.raises(ValueError, match="needs jackknife groups"):
            cc.matrix("similarity", eps=0.5, se=True)
    assert len(cc._thresholds) <= 1
