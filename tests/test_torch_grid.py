"""nsm.torch.compare_all: every site against every site, Grams checked against activations
pooled by hand."""

from __future__ import annotations

import functools
import os
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch extra is not installed")
F = torch.nn.functional

import nsm  # noqa: E402
import nsm.plot.heatmap  # noqa: E402
import nsm.torch  # noqa: E402
from tests import oracle  # noqa: E402

# These tests check captured values against hand-extracted activations exactly, so the Grams
# take the float64 pass; the mixed pass has its own tests (tests/test_gram_precision.py).
compare_all = functools.partial(nsm.torch.compare_all, precision="float64")


def net(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(4, 5, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(5 * 16, 6),
        torch.nn.ReLU(),
    ).eval()


def batches(n=4, size=8):
    g = torch.Generator().manual_seed(7)
    return [torch.randn(32, 3, size, size, generator=g) for _ in range(n)]


def outputs(model, data):
    """Every ReLU's output for every batch, by running the layers one at a time."""
    out = {"1": [], "4": [], "7": []}
    with torch.no_grad():
        for x in data:
            h = x
            for i, layer in enumerate(model):
                h = layer(h)
                if str(i) in out:
                    out[str(i)].append(h)
    return out


def rows(t, grid):
    """(N, C, H, W) or (N, C) -> samples on ``grid`` (None: as it is; (): one per input)."""
    t = t.double()  # means and pools in float64, as compare_all takes them
    if t.ndim == 2:
        return t.numpy()
    if grid == ():
        return t.mean(dim=(2, 3)).numpy()
    if tuple(t.shape[2:]) != grid:
        t = F.avg_pool2d(t, t.shape[2] // grid[0])
    return t.movedim(1, -1).reshape(-1, t.shape[1]).double().numpy()


def check_pair(cross, a, b, X, Y):
    got = cross.pair(a, b).gram
    expected = nsm.Gram.from_arrays(np.vstack(X), np.vstack(Y))
    assert got.n_samples == expected.n_samples
    np.testing.assert_allclose(
        got.matrix, expected.matrix, rtol=1e-9, atol=1e-9 * np.abs(expected.matrix).max()
    )


@pytest.mark.parametrize("samples", ["inputs", "pool"])
def test_every_pair_against_pooled_activations(samples):
    a, b, data = net(1), net(2), batches()
    cross = compare_all(a, b, data, torch.nn.ReLU, samples=samples, progress=False)
    assert list(cross.sites_a) == ["1", "4", "7"] and list(cross.sites_b) == ["1", "4", "7"]
    oa, ob = outputs(a, data), outputs(b, data)
    grids = {"1": (8, 8), "4": (4, 4), "7": ()}
    for sa in grids:
        for sb in grids:
            if samples == "inputs":
                grid = ()
            elif () in (grids[sa], grids[sb]):
                grid = ()
            else:
                grid = min(grids[sa], grids[sb])
            check_pair(cross, sa, sb, [rows(t, grid) for t in oa[sa]], [rows(t, grid) for t in ob[sb]])
    cka = cross.matrix("linear_cka")
    assert cka.shape == (3, 3) and np.isfinite(cka).all()
    direct = nsm.measures.linear_cka(
        np.vstack([rows(t, ()) for t in oa["1"]]), np.vstack([rows(t, ()) for t in ob["7"]])
    )
    assert cka[0, 2] == pytest.approx(direct, rel=1e-9)


def test_pairs_that_cannot_share_samples_are_reported():
    class Tokens(torch.nn.Module):
        def __init__(self, seed):
            super().__init__()
            torch.manual_seed(seed)
            self.conv = torch.nn.Conv2d(3, 4, 3)  # 8x8 -> 6x6
            self.proj = torch.nn.Linear(6, 5)  # on (N, 4 * 6, 6): a token site

        def forward(self, x):
            c = self.conv(x)
            return self.proj(c.reshape(x.shape[0], -1, 6))

    data = batches(2)
    cross = compare_all(Tokens(1), Tokens(2), data, ["conv", "proj"], progress=False)
    assert cross.pair("conv", "conv").gram is not None
    assert "token" in cross.reasons[("conv", "proj")]
    assert np.isnan(cross.matrix("linear_cka")[0, 1])


@pytest.mark.parametrize("baseline", [True, False])
def test_memory_is_checked_before_streaming(baseline):
    a, b, data = net(1), net(2), batches(2)
    # grids (8, 8): the first ReLU of each (widths 4 | 4); (4, 4): the first two (4, 5 | 4, 5);
    # (): all (4, 5, 6 | 4, 5, 6). A grid keeps each site's own block, A's sites against B's
    # and the column sums, float64, counted twice (the sums and their copy on the host), and
    # its baseline's as much again.
    kept = [
        (4**2 * 2) + 4 * 4 + 8,
        (4**2 + 5**2) * 2 + 9 * 9 + 18,
        (4**2 + 5**2 + 6**2) * 2 + 15 * 15 + 30,
    ]
    total = (4 if baseline else 2) * 8 * sum(kept)
    with pytest.raises(
        ValueError,
        match=rf"would take {total} bytes, over max_bytes = 1000 bytes; the widest sites are "
        r"'7' of model_a \(6\)",
    ):
        compare_all(a, b, data, torch.nn.ReLU, max_bytes=1000, baseline=baseline, progress=False)
    assert compare_all(a, b, data, torch.nn.ReLU, max_bytes=total, baseline=baseline, progress=False)
    with pytest.raises(ValueError, match="samples must be one of"):
        compare_all(a, b, data, torch.nn.ReLU, samples="mean", progress=False)


def grid_of(samples, sa, sb):
    """The grid a pair of ``net``'s ReLUs shares its samples on."""
    grids = {"1": (8, 8), "4": (4, 4), "7": ()}
    if samples == "inputs" or () in (grids[sa], grids[sb]):
        return ()
    return min(grids[sa], grids[sb])


@pytest.mark.parametrize("samples", ["inputs", "pool"])
def test_baseline_against_shifted_activations(samples):
    a, b, data = net(1), net(2), batches(4)
    data[-1] = data[-1][:20]  # a short last batch: paired with the first rows of the one before
    cross = compare_all(a, b, data, torch.nn.ReLU, samples=samples, eps=[0.3, 0.6], progress=False)
    oa, ob = outputs(a, data), outputs(b, data)
    for sa in ("1", "4", "7"):
        for sb in ("1", "4", "7"):
            grid = grid_of(samples, sa, sb)
            X = [rows(t, grid) for t in oa[sa]]
            Y = [rows(t, grid) for t in ob[sb]]
            # batch i of A against batch i-1 of B, the first min(len) samples of each
            m = [min(len(X[i]), len(Y[i - 1])) for i in range(1, len(X))]
            Xs = np.vstack([X[i][: m[i - 1]] for i in range(1, len(X))])
            Ys = np.vstack([Y[i - 1][: m[i - 1]] for i in range(1, len(X))])
            expected = nsm.Gram.from_arrays(Xs, Ys)
            lc = cross.pair(sa, sb)
            got = lc.baseline_gram
            assert got is not None and got.n_samples == expected.n_samples == len(Xs)
            np.testing.assert_allclose(
                got.matrix, expected.matrix, rtol=1e-9, atol=1e-9 * np.abs(expected.matrix).max()
            )
            np.testing.assert_allclose(got.column_sums, Xs.sum(0).tolist() + Ys.sum(0).tolist(), rtol=1e-9)
            reference = nsm.match_thresholds(expected)
            assert lc.baseline(0.3) == pytest.approx(float(reference.similarity(0.3)), abs=1e-12)
    for e in (0.3, 0.6):
        gap = cross.matrix("similarity_gap", eps=e)
        sim = cross.matrix("similarity", eps=e)
        base = np.array([[cross.pair(sa, sb).baseline(e) for sb in cross.sites_b] for sa in cross.sites_a])
        assert np.isfinite(gap).all()
        np.testing.assert_array_equal(gap, sim - base)


def test_one_batch_gives_a_nan_baseline_as_compare_does(tmp_path):
    a, b, data = net(1), net(2), batches(1)
    cross = compare_all(a, b, data, torch.nn.ReLU, eps=[0.5], progress=False)
    single = nsm.torch.compare(a, b, data, [("1", "1")], eps=[0.5], progress=False, precision="float64")
    assert np.isnan(single["1"].baseline(0.5))
    assert np.isnan(cross.matrix("similarity_gap", eps=0.5)).all()
    assert np.isfinite(cross.matrix("similarity", eps=0.5)).all()
    lc = cross.pair("1", "4")
    assert lc.baseline_gram is None and np.isnan(lc.baseline(0.5)) and np.isnan(lc.baseline_match_auc())
    # the report leaves out the gap's heatmap, which would be all NaN
    names = [os.path.basename(p) for p in nsm.plot.heatmap.write_cross_report(cross, tmp_path)]
    assert "heatmap_similarity_0.5.png" in names and "heatmap_similarity_gap_0.5.png" not in names


def test_without_baseline_the_gap_is_nan_and_with_it_drawn(tmp_path):
    a, b, data = net(1), net(2), batches(3)
    without = compare_all(a, b, data, torch.nn.ReLU, baseline=False, progress=False)
    assert np.isnan(without.matrix("similarity_gap", eps=0.5)).all()
    assert without.pair("1", "7").baseline_gram is None
    with_ = compare_all(a, b, data, torch.nn.ReLU, eps=[0.5], progress=False)
    np.testing.assert_array_equal(with_.matrix("linear_cka"), without.matrix("linear_cka"))
    names = [os.path.basename(p) for p in nsm.plot.heatmap.write_cross_report(with_, tmp_path)]
    assert "heatmap_similarity_gap_0.5.png" in names
    with pytest.raises(TypeError, match="baseline must be True or False"):
        compare_all(a, b, data, torch.nn.ReLU, baseline="yes", progress=False)


def test_pair_grams_keep_the_grids_precision():
    # The measures' rank cutoff reads the Gram's precision: a pair cut out of a mixed grid Gram
    # must say "mixed" (it said the default, float64, and CCA counted float32 rounding).
    a, b, data = net(1), net(2), batches(2)
    cross = nsm.torch.compare_all(a, b, data, torch.nn.ReLU, precision="mixed", progress=False)
    lc = cross.pair("1", "7")
    assert lc.gram.precision == "mixed" and lc.baseline_gram.precision == "mixed"
    assert compare_all(a, b, data, torch.nn.ReLU, progress=False).pair("1", "7").gram.precision == "float64"


@pytest.mark.parametrize("rule", ["users", "lowered"])
@pytest.mark.parametrize("samples", ["inputs", "pool"])
def test_every_measure_of_every_pair_against_the_plain_definitions(samples, rule, request):
    # The grid computes the centred measures from its own Gram, sharing each site's centring and
    # eigen-decompositions across its pairs, and the pairs' thresholds several at once (with the
    # users' rule; the lowered rule sends every pair to the one-after-another path): each value
    # must be the plain definition on the pair's activations, pooled by hand.
    from tests.test_measures import REFERENCES

    if rule == "users":
        request.getfixturevalue("engine_rule_of_users")
    a, b, data = net(1), net(2), batches(3)
    cross = compare_all(a, b, data, torch.nn.ReLU, samples=samples, progress=False)
    matrices = {m: cross.matrix(m) for m in nsm.measures.MEASURES}
    similarity = cross.matrix("similarity", eps=0.4)
    oa, ob = outputs(a, data), outputs(b, data)
    grid = np.linspace(0.0, 1.0, 101)
    exact = 0
    for i, sa in enumerate(cross.sites_a):
        for j, sb in enumerate(cross.sites_b):
            where = grid_of(samples, sa, sb)
            X = np.vstack([rows(t, where) for t in oa[sa]])
            Y = np.vstack([rows(t, where) for t in ob[sb]])
            for name, reference in REFERENCES.items():
                expected = reference(X, Y)
                assert matrices[name][i, j] == pytest.approx(expected, rel=1e-8, abs=1e-10), (name, sa, sb)
            # match_auc between the oracle's Riemann sums; the similarity at one ε exactly
            sims = []
            for e in grid:
                mx, my = oracle.max_match(X, Y, e)
                sims.append((len(mx) + len(my)) / (X.shape[1] + Y.shape[1]))
            h = grid[1] - grid[0]
            assert h * sum(sims[:-1]) - 1e-9 <= matrices["match_auc"][i, j] <= h * sum(sims[1:]) + 1e-9
            robust = oracle.robust_max_match(X, Y, 0.4)
            if robust is not None:  # None: the match changes within 1e-6 of ε (a near-tie)
                mx, my = robust
                assert similarity[i, j] == pytest.approx((len(mx) + len(my)) / (X.shape[1] + Y.shape[1]))
                exact += 1
    assert exact >= 6


def test_the_grids_measure_warnings_come_from_the_callers_line_once_per_pair():
    # The centred measures of a grid's pairs run in worker threads: their warnings are emitted
    # by the calling thread, in pair order, pointing at the caller (from a worker they pointed
    # at concurrent/futures/thread.py, out of reach of module filters).
    a, b, data = net(1), net(2), [batches(1)[0][:8]]  # 8 inputs for 4 to 6 + 4 to 6 neurons
    cross = compare_all(a, b, data, torch.nn.ReLU, samples="inputs", baseline=False, progress=False)
    filters = list(warnings.filters)
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        cross.matrix("cca")
    assert warnings.filters == filters
    few = [w for w in got if issubclass(w.category, nsm.FewSamplesWarning)]
    assert len(few) == 9
    assert {os.path.basename(w.filename) for w in few} == {os.path.basename(__file__)}


def test_a_grid_without_samples_names_the_pair():
    def tokens(seed):
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.ReLU()).eval()

    data = [torch.randn(8, 7, 5) for _ in range(2)]
    cross = compare_all(
        tokens(0),
        tokens(1),
        data,
        torch.nn.ReLU,
        layout="nlc",
        mask=lambda batch: torch.zeros(batch.shape[:2], dtype=torch.bool),
        progress=False,
    )
    for measure in ("linear_cka", "cca", "match_auc"):
        with pytest.raises(ValueError, match=r"grams\[\('1', '1'\)\] has no samples"):
            cross.matrix(measure)


@pytest.mark.parametrize("samples", ["inputs", "pool"])
def test_rows_gathered_or_sliced_give_the_same_grams(samples, monkeypatch):
    # The grid gathers batches into chunks of rows before its products and converts a large
    # batch a slice at a time: with tiny chunks every batch is sliced and flushed on its own.
    import nsm.torch.site_blocks as site_blocks

    monkeypatch.setattr(site_blocks, "CHUNK_ROWS", 8)
    monkeypatch.setattr(site_blocks, "CHUNK_BYTES", 1000)
    a, b, data = net(1), net(2), batches(3)
    data[-1] = data[-1][:20]
    cross = compare_all(a, b, data, torch.nn.ReLU, samples=samples, progress=False)
    oa, ob = outputs(a, data), outputs(b, data)
    for sa in ("1", "4", "7"):
        for sb in ("1", "4", "7"):
            grid = grid_of(samples, sa, sb)
            check_pair(cross, sa, sb, [rows(t, grid) for t in oa[sa]], [rows(t, grid) for t in ob[sb]])


def test_mixed_grid_grams_within_the_mixed_bound_and_bad_values_raise():
    a, b, data = net(1), net(2), batches(3)
    cross = nsm.torch.compare_all(
        a, b, data, torch.nn.ReLU, samples="inputs", precision="mixed", progress=False
    )
    oa, ob = outputs(a, data), outputs(b, data)
    X = np.vstack([rows(t, ()) for t in oa["1"]])
    Y = np.vstack([rows(t, ()) for t in ob["7"]])
    exact = nsm.Gram.from_arrays(X, Y).matrix
    scale = np.sqrt(np.outer(np.diag(exact), np.diag(exact)))
    assert np.abs(cross.pair("1", "7").gram.matrix - exact).max() <= 1e-6 * scale.max()
    bad = [x.clone() for x in data]
    bad[1][0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="model_a's activations contain NaN or Inf"):
        compare_all(a, b, bad, torch.nn.ReLU, samples="inputs", progress=False)
    huge = [x.double() * 1e160 for x in data]  # float64 models: squares past float64's range
    with pytest.raises(ValueError, match="overflow float64; rescale"):
        compare_all(a.double(), b.double(), huge, torch.nn.ReLU, samples="inputs", progress=False)


def test_mixed_products_are_ieee_float32_and_the_users_precision_comes_back(monkeypatch):
    # The mixed pass's float32 products must not run as TF32 or bf16 whatever the user set with
    # torch.set_float32_matmul_precision; the legacy TF32 switch left CPU matmuls as the user
    # set them, and mixing it with the new API made the setting unreadable afterwards.
    import nsm.torch.site_blocks as site_blocks

    seen = []
    add = site_blocks._Blocks.add

    def spy(self, x, y, cuts, mixed):
        if mixed:
            seen.append(
                (torch.backends.mkldnn.matmul.fp32_precision, torch.backends.cuda.matmul.fp32_precision)
            )
        return add(self, x, y, cuts, mixed)

    monkeypatch.setattr(site_blocks._Blocks, "add", spy)
    saved = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")
        a, b, data = net(1), net(2), batches(2)
        nsm.torch.compare_all(a, b, data, torch.nn.ReLU, samples="inputs", precision="mixed", progress=False)
        assert seen and set(seen) == {("ieee", "ieee")}
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision(saved)


def test_with_groups_each_batch_is_multiplied_once(monkeypatch):
    import nsm.torch.site_blocks as site_blocks

    rows = []
    add = site_blocks._Blocks.add
    monkeypatch.setattr(
        site_blocks._Blocks,
        "add",
        lambda self, x, y, cuts, mixed: rows.append(x.shape[0]) or add(self, x, y, cuts, mixed),
    )
    a, b, data = net(1), net(2), batches(4)
    compare_all(a, b, data, torch.nn.ReLU, samples="inputs", groups=2, baseline=False, progress=False)
    assert sum(rows) == sum(len(x) for x in data)  # once, into the batch's group


def test_count_dead_is_taken_as_compare_takes_it():
    # compare_all had no count_dead: dead neurons always counted in the denominator.
    a, b, data = net(1), net(2), batches()
    with torch.no_grad():  # kill two of b's Linear neurons: their ReLU outputs are 0 everywhere
        b[6].weight[:2] = 0.0
        b[6].bias[:2] = -1.0
    grid = compare_all(a, b, data, ["7"], progress=False, baseline=False, count_dead=False)
    assert isinstance(grid, nsm.CrossComparison) and grid.count_dead is False
    X, Y = (np.vstack([rows(t, None) for t in outputs(m, data)["7"]]) for m in (a, b))
    expected = nsm.match_thresholds(X, Y, count_dead=False)
    assert len(expected.dead_y) >= 2
    for eps in (0.2, 0.5, 0.9):
        assert grid.matrix("similarity", eps=eps)[0, 0] == pytest.approx(float(expected.similarity(eps)))
