"""Figures at 60 sites: heatmaps of a CrossComparison, the report's figures, short labels, and
`nsm report` on a saved CrossComparison."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nsm
from nsm.labels import shorten_labels
from nsm.results import Comparison, CrossComparison, LayerComparison
from tests.cases import related_layers

pytest.importorskip("matplotlib", reason="figures need matplotlib")

from nsm import report  # noqa: E402
from nsm.cli import main  # noqa: E402
from nsm.heatmap import plot_heatmap, write_cross_report  # noqa: E402

N_SITES = 60


# ---- labels -----------------------------------------------------------------------------------


def test_common_prefix_is_cut_after_a_separator():
    assert shorten_labels(["model.layer1.conv", "model.layer2.conv"]) == (
        "model.",
        ["layer1.conv", "layer2.conv"],
    )
    assert shorten_labels(["enc/block_1/out", "enc/block_2/out"]) == ("enc/block_", ["1/out", "2/out"])
    assert shorten_labels(["layer1", "layer12"]) == ("", ["layer1", "layer12"])  # never inside a part
    assert shorten_labels(["a.b.c"]) == ("", ["a.b.c"])  # one label: nothing is common to elide
    assert shorten_labels([]) == ("", [])


def test_a_prefix_never_empties_a_label():
    # "net.fc" is a prefix of the other; cutting "net.fc." would leave it empty.
    assert shorten_labels(["net.fc", "net.fc.relu"]) == ("net.", ["fc", "fc.relu"])
    assert shorten_labels(["x.y", "x.y"]) == ("x.", ["y", "y"])


def test_long_labels_lose_their_middle_unless_that_makes_them_equal():
    long_a = "backbone.stage_three.block_eleven.conv_a"
    long_b = "backbone.stage_three.block_eleven.conv_b"
    prefix, short = shorten_labels([long_a, "head.fc"], max_chars=12)
    assert prefix == "" and short == ["backb…conv_a", "head.fc"]
    # Eliding would make these two equal ("bb.…_a" style collisions): they stay whole.
    twins = ["s" * 20 + "x" + "t" * 20, "s" * 20 + "y" + "t" * 20]
    assert shorten_labels(twins, max_chars=10)[1] == twins
    assert shorten_labels([long_a, long_b], max_chars=12) == (
        "backbone.stage_three.block_eleven.conv_",
        ["a", "b"],
    )
    with pytest.raises(ValueError, match="max_chars must be an int >= 5"):
        shorten_labels(["a"], max_chars=2)


@given(
    st.lists(st.text(alphabet="ab._/1", min_size=1, max_size=30), min_size=1, max_size=12, unique=True),
    st.integers(5, 40),
)
def test_labels_stay_distinct_non_empty_and_short(labels, max_chars):
    prefix, short = shorten_labels(labels, max_chars)
    assert len(short) == len(labels) and len(set(short)) == len(labels)
    for original, s in zip(labels, short):
        assert s and original.startswith(prefix)
        whole = original[len(prefix) :]
        assert s == whole or (len(s) == max_chars and "…" in s)


# ---- figures at 60 sites ----------------------------------------------------------------------


def site_names(n):
    return [f"model.encoder.stage{i // 10}.block{i % 10}.relu" for i in range(n)]


@pytest.fixture(scope="module")
def big_cross():
    """60 × 60 sites (four neurons each, 150 samples); every 13th pair cannot be compared, one
    site of A has no variance, and half the pairs have a baseline."""
    rng = np.random.default_rng(1)
    sites = site_names(N_SITES)
    acts = {s: np.maximum(rng.standard_normal((150, 4)), 0) for s in sites}
    acts[sites[7]] = np.zeros((150, 4))
    grams, reasons, bases = {}, {}, {}
    for i, a in enumerate(sites):
        for j, b in enumerate(sites):
            if (i + 2 * j) % 13 == 0:
                grams[(a, b)], reasons[(a, b)] = None, "a token site against a spatial site"
                continue
            grams[(a, b)] = nsm.Gram.from_arrays(acts[a], acts[b], num_threads=1)
            if j % 2:
                bases[(a, b)] = nsm.Gram.from_arrays(acts[a], np.roll(acts[b], 3, axis=0), num_threads=1)
    return CrossComparison(sites, sites, grams, reasons=reasons, baselines=bases, eps=[0.5])


@pytest.mark.parametrize("measure, eps", [("match_auc", None), ("similarity_gap", 0.5)])
def test_heatmap_renders_at_60_by_60(big_cross, tmp_path, measure, eps):
    path = tmp_path / f"{measure}.png"
    if measure == "similarity_gap":  # a dead site's similarity is 0, not undefined
        plot_heatmap(big_cross, path, measure=measure, eps=eps)
    else:
        with pytest.warns(nsm.NsmWarning, match="layer 'model.encoder.stage0.block7.relu'"):
            plot_heatmap(big_cross, path, measure=measure, eps=eps)
    assert path.stat().st_size > 20_000


def test_small_heatmap_prints_values(tmp_path, rng):
    X, Y = related_layers(rng, 300, 4, 4)
    cc = CrossComparison(
        ["a.one", "a.two"],
        ["b.one"],
        {("a.one", "b.one"): nsm.Gram.from_arrays(X, Y), ("a.two", "b.one"): None},
        reasons={("a.two", "b.one"): "different inputs"},
    )
    for measure, eps in (("cca", None), ("similarity", 0.3)):
        plot_heatmap(cc, tmp_path / f"{measure}.png", measure, eps)
        assert (tmp_path / f"{measure}.png").stat().st_size > 5_000


def big_comparison():
    rng = np.random.default_rng(2)
    layers = {}
    for i, name in enumerate(site_names(N_SITES)):
        X, Y = related_layers(rng, 200, 4, 3, noise=0.1 * (i % 5))
        if i == 3:
            Y = np.zeros_like(Y)  # a layer whose similarity is 0 at every ε (its bars are marked)
        g = nsm.Gram.from_arrays(X, Y, num_threads=1)
        base = nsm.Gram.from_arrays(X, np.roll(Y, 5, axis=0), num_threads=1)
        key = name if i % 2 else (name, name.replace("encoder", "enc_b"))
        layers[key] = LayerComparison(key, nsm.match_thresholds(g), nsm.match_thresholds(base), gram=g)
    return Comparison(layers, (0.2, 0.5))


def test_report_figures_render_at_60_layers(tmp_path):
    paths = report.write_report(big_comparison(), tmp_path)
    assert [os.path.basename(p) for p in paths] == [
        "report.json",
        "similarity.png",
        "curves.png",
        "thresholds.png",
    ]
    for p in paths[1:]:
        assert os.path.getsize(p) > 20_000


def test_curve_colours_never_repeat():
    plt = report._pyplot()
    for n in (3, 10, 11, 60):
        colors = report.curve_colors(plt, n)
        assert len({tuple(np.round(c, 6)) for c in colors}) == n


# ---- nsm report on a saved CrossComparison ---------------------------------------------------


def test_nsm_report_draws_the_heatmaps_of_a_saved_cross_comparison(tmp_path, rng, capsys):
    acts_a = {f"a.l{i}": related_layers(rng, 300, 4, 3)[0] for i in range(3)}
    acts_b = {f"b.l{i}": related_layers(rng, 300, 4, 3)[1] for i in range(4)}
    grams = {(a, b): nsm.Gram.from_arrays(X, Y) for a, X in acts_a.items() for b, Y in acts_b.items()}
    bases = {
        (a, b): nsm.Gram.from_arrays(X, np.roll(Y, 9, axis=0))
        for a, X in acts_a.items()
        for b, Y in acts_b.items()
    }
    cc = CrossComparison(list(acts_a), list(acts_b), grams, baselines=bases, eps=[0.3])
    cc.save(tmp_path / "saved.json")
    assert main(["report", str(tmp_path / "saved.json"), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    names = sorted(os.listdir(tmp_path / "out"))
    assert names == sorted(
        [
            "cross.json",
            "cross.csv",
            "heatmap_linear_cka.png",
            "heatmap_cca.png",
            "heatmap_svcca.png",
            "heatmap_procrustes.png",
            "heatmap_match_auc.png",
            "heatmap_similarity_0.3.png",
            "heatmap_similarity_gap_0.3.png",
        ]
    )
    assert "3 sites of A x 4 sites of B" in out
    redrawn = CrossComparison.load(tmp_path / "out" / "cross.json")
    np.testing.assert_array_equal(redrawn.matrix("svcca"), cc.matrix("svcca"))
    # Without baselines there is no gap heatmap.
    one = {("a.l0", "b.l0"): grams[("a.l0", "b.l0")]}
    written = write_cross_report(CrossComparison(["a.l0"], ["b.l0"], one, eps=[0.3]), tmp_path / "nobase")
    assert "heatmap_similarity_gap_0.3.png" not in [os.path.basename(p) for p in written]
