"""The centred match and the starved-layer flag in comparisons: nsm.torch.compare and
compare_all against hand-centred activations, the table, to_dict/save/load."""

from __future__ import annotations

import functools
import json
import os

import numpy as np
import pytest

import nsm
from nsm.results import Comparison, CrossComparison, LayerComparison
from nsm.starved import FEW_SAMPLES_RATIO, few_samples
from tests.cases import quiet, related_layers

torch = pytest.importorskip("torch", reason="the torch extra is not installed")

import nsm.torch  # noqa: E402
from tests.test_torch import collect  # noqa: E402
from tests.torch_models import image_batches, small_cnn  # noqa: E402

compare = functools.partial(nsm.torch.compare, precision="float64")


def centred(a: np.ndarray) -> np.ndarray:
    return a - a.mean(axis=0)


def test_torch_compare_centered_against_hand_centred_activations():
    a, b, data = small_cnn(1), small_cnn(2), image_batches()
    c = compare(a, b, data, ["3", "6"], progress=False, centered=True)
    for name, layout in (("3", "channels"), ("6", "units")):
        X, Y = collect(a, data, name, layout), collect(b, data, name, layout)
        lc = c[name]
        assert lc.centered and lc.thresholds.centered and lc.baseline_thresholds.centered
        # the Gram kept is the raw one
        np.testing.assert_allclose(lc.gram.matrix, nsm.Gram.from_arrays(X, Y).matrix, rtol=1e-9, atol=1e-9)
        Xc, Yc = centred(X), centred(Y)
        dead_x = np.flatnonzero(np.ptp(X, axis=0) == 0)  # constant over the samples
        dead_y = np.flatnonzero(np.ptp(Y, axis=0) == 0)
        assert lc.dead_x.tolist() == dead_x.tolist() and lc.dead_y.tolist() == dead_y.tolist()
        Xc[:, dead_x], Yc[:, dead_y] = 0.0, 0.0
        by_hand = nsm.match_thresholds(Xc, Yc)
        np.testing.assert_allclose(lc.thresholds.x, by_hand.x, atol=1e-6)
        np.testing.assert_allclose(lc.thresholds.y, by_hand.y, atol=1e-6)
        for eps in (0.2, 0.5, 0.8):
            via, direct = lc.max_match(eps), nsm.max_match(X, Y, eps, centered=True)
            assert (via.x.tolist(), via.y.tolist()) == (direct.x.tolist(), direct.y.tolist())
            assert via.centered
    # the baseline is centred too: the shifted-batch Gram's centred thresholds
    base = c["6"].baseline_thresholds
    again = nsm.match_thresholds(c["6"].baseline_gram, centered=True)
    np.testing.assert_array_equal(base.x, again.x)
    uncentred = compare(a, b, data, ["6"], progress=False)
    assert not uncentred["6"].centered
    assert not np.array_equal(uncentred["6"].thresholds.x, c["6"].thresholds.x)
    with pytest.raises(TypeError, match="centered must be True or False"):
        compare(a, b, data, ["6"], progress=False, centered="yes")


def test_compare_all_centered():
    a, b, data = small_cnn(1), small_cnn(2), image_batches(3)
    cross = nsm.torch.compare_all(a, b, data, ["3", "6"], progress=False, precision="float64", centered=True)
    assert cross.centered
    X, Y = collect(a, data, "6", "units"), collect(b, data, "6", "units")
    t = cross.thresholds("6", "6")
    assert t.centered
    np.testing.assert_allclose(t.x, nsm.match_thresholds(X, Y, centered=True).x, atol=1e-9)
    assert cross.pair("6", "6").centered


def test_cross_comparison_saves_centered(tmp_path):
    rng = np.random.default_rng(0)
    X, Y = related_layers(rng, 300, 5, 4)
    cc = CrossComparison(["a"], ["b"], {("a", "b"): nsm.Gram.from_arrays(X + 1, Y)}, centered=True)
    path = tmp_path / "cross.json"
    cc.save(path)
    d = json.loads(path.read_text())
    assert d["centered"] is True and d["pairs"][0]["thresholds"]["centered"] is True
    back = CrossComparison.load(path)
    assert back.centered and back.thresholds("a", "b").centered
    np.testing.assert_array_equal(back.thresholds("a", "b").x, cc.thresholds("a", "b").x)
    del d["centered"]
    old = CrossComparison.from_dict(d)  # files saved before the centred match
    assert not old.centered


def layer(n_samples: int, n_x: int, n_y: int, centered: bool = False, name: str = "fc") -> LayerComparison:
    X, Y = related_layers(np.random.default_rng(0), n_samples, n_x, n_y)
    g = nsm.Gram.from_arrays(X, Y)
    return LayerComparison(name, quiet(nsm.match_thresholds, g, centered=centered), None, gram=g)


def test_few_samples_rule():
    assert FEW_SAMPLES_RATIO > 1  # the flag reaches beyond FewSamplesWarning's degenerate end
    n = 20
    just_below = int(np.ceil(FEW_SAMPLES_RATIO * n)) - 1
    assert few_samples(just_below, 10, 10) and not few_samples(just_below + 1, 10, 10)
    assert layer(just_below, 10, 10).few_samples
    assert not layer(just_below + 1, 10, 10).few_samples
    assert layer(15, 10, 10).few_samples  # the degenerate end is starved too


def test_table_marks_starved_and_centred_layers():
    starved = layer(30, 10, 10)
    fed = layer(2000, 10, 10)
    c = Comparison({"starved": starved, "fed": fed}, eps=[0.3])
    lines = c.table().splitlines()
    row = next(line for line in lines if line.startswith("starved"))
    assert "starved (1.5 samples/neuron)" in row
    assert "starved" not in next(line for line in lines if line.startswith("fed"))
    assert any(line.startswith("starved: n_samples <") for line in lines)
    assert not any("centred" in line for line in lines)
    centred_c = Comparison({"fed": layer(2000, 10, 10, centered=True)}, eps=[0.3])
    assert "centred match (every layer)" in centred_c.table()
    assert not any(line.startswith("starved:") for line in centred_c.table().splitlines())
    mixed = Comparison({"a": layer(2000, 10, 10, centered=True), "b": fed}, eps=[0.3])
    assert "centred" in next(line for line in mixed.table().splitlines() if line.startswith("a "))
    rows = c.to_rows()
    assert [r["few_samples"] for r in rows] == [True, False] and not rows[0]["centered"]


def test_save_load_keeps_centered_and_few_samples(tmp_path):
    c = Comparison({"s": layer(30, 10, 10, True, "s"), "f": layer(2000, 10, 10, name="f")}, eps=[0.3])
    path = tmp_path / "c.json"
    c.save(path)
    d = json.loads(path.read_text())
    assert [item["few_samples"] for item in d["layers"]] == [True, False]
    assert [item["thresholds"]["centered"] for item in d["layers"]] == [True, False]
    back = Comparison.load(path)
    assert back["s"].centered and not back["f"].centered
    assert back["s"].few_samples and not back["f"].few_samples
    assert back["s"].max_match(0.3).centered
    # a file saved before either field still loads: uncentred, and the flag is computed
    for item in d["layers"]:
        del item["few_samples"]
        del item["thresholds"]["centered"]
    old = Comparison.from_dict(d)
    assert not old["s"].centered and old["s"].few_samples and not old["f"].few_samples
    d["layers"][0]["few_samples"] = "yes"
    with pytest.raises(ValueError, match="few_samples must be true or false"):
        Comparison.from_dict(d)
    d["layers"][0]["few_samples"] = True
    d["layers"][0]["thresholds"]["centered"] = 1
    with pytest.raises(ValueError, match="centered must be true or false"):
        Comparison.from_dict(d)


def test_simple_matches_of_a_centred_layer_are_centred():
    lc = layer(400, 6, 5, centered=True)
    s = lc.simple_matches(0.5)
    assert s.maximum_match.centered
    expected = nsm.max_match(lc.gram, 0.5, centered=True)
    assert s.maximum_match.x.tolist() == expected.x.tolist()


def test_report_marks_starved_and_centred_layers(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from nsm.plot import report

    c = Comparison({"s": layer(30, 10, 10, True, "s"), "f": layer(2000, 10, 10, True, "f")}, eps=[0.3])
    assert report._match_title(c, "T") == "T (centred match)"
    assert report._starved(c, list(c)) == [True, False]
    drawn = {}
    close = plt.close

    def keep(fig):  # look at each figure before it is closed
        ax = fig.axes[0]
        drawn[ax.get_title()] = ([t.get_text() for t in ax.get_xticklabels()], ax.get_xlabel())
        close(fig)

    plt.close = keep
    try:
        paths = report.write_report(c, tmp_path)
    finally:
        plt.close = close
    assert len(paths) == 4 and all(os.path.getsize(p) > 0 for p in paths)
    bars = drawn["How much of each layer the other network shares (centred match)"]
    assert bars[0][:2] == ["s *", "f"] and "starved" in bars[1]
    assert "starved" in drawn["Similarity against ε, per layer (centred match)"][1]
    assert Comparison.load(paths[0])["s"].few_samples


def test_recentered_equals_compare_centered():

    a, b, data = small_cnn(1), small_cnn(2), image_batches(4)
    direct = compare(a, b, data, ["3", "6"], progress=False, centered=True)
    via = compare(a, b, data, ["3", "6"], progress=False).recentered()
    for key in direct:
        assert via[key].centered and via[key].baseline_thresholds.centered
        np.testing.assert_array_equal(via[key].thresholds.x, direct[key].thresholds.x)
        np.testing.assert_array_equal(via[key].baseline_thresholds.y, direct[key].baseline_thresholds.y)
