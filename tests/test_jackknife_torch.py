"""Jackknife groups through nsm.torch: batches dealt round-robin, checked against Grams of the
remaining batches' activations collected by hand; the comparison's table, export, save/load and
figure; compare_all's matrices."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch extra is not installed")

import nsm  # noqa: E402
import nsm.plot  # noqa: E402
import nsm.torch  # noqa: E402
from nsm.results import Comparison  # noqa: E402
from tests.torch_models import distributed_worker, image_batches, small_cnn  # noqa: E402

compare = functools.partial(nsm.torch.compare, precision="float64", progress=False)


def _collect(model, batches, name):
    """(samples, channels) activations of module ``name``, one array per batch, by hand."""
    return [
        o.movedim(1, -1).reshape(-1, o.shape[1]).double().numpy() if o.ndim == 4 else o.double().numpy()
        for o in _collect_raw(model, batches, name)
    ]


def _jackknife(values):
    t = np.asarray(values, dtype=np.float64)
    k = len(t)
    return math.sqrt((k - 1) / k * float(np.sum((t - t.mean()) ** 2)))


def _numpy_cka(X, Y):
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    return float(np.linalg.norm(Xc.T @ Yc) ** 2 / (np.linalg.norm(Xc.T @ Xc) * np.linalg.norm(Yc.T @ Yc)))


@pytest.mark.parametrize("core", [True, False])
def test_compare_deals_batches_round_robin(monkeypatch, core):
    monkeypatch.setattr(nsm.torch.accumulate, "CORE_ON_CPU", core)  # False: the GPU arithmetic
    g = torch.Generator().manual_seed(3)
    data = [torch.randn(s, 1, 8, 8, generator=g) for s in (20, 24, 20, 16, 20, 12, 20)]
    a, b = small_cnn(1), small_cnn(2)
    c = compare(a, b, data, ["3", "6"], groups=3)
    for name in ("3", "6"):
        xa, yb = _collect(a, data, name), _collect(b, data, name)
        lc = c[name]
        assert lc.groups == 3 and lc.gram.groups == 3
        loo_cka = []
        for k, t in enumerate(lc.thresholds.leave_out):
            keep = [i for i in range(len(data)) if i % 3 != k]
            X, Y = np.vstack([xa[i] for i in keep]), np.vstack([yb[i] for i in keep])
            direct = nsm.match_thresholds(X, Y)
            assert t.n_samples == X.shape[0]
            np.testing.assert_allclose(t.x, direct.x, atol=1e-8)
            np.testing.assert_allclose(t.y, direct.y, atol=1e-8)
            loo_cka.append(_numpy_cka(X, Y))
        X, Y = np.vstack(xa), np.vstack(yb)
        e = lc.linear_cka(se=True)
        assert e.value == pytest.approx(_numpy_cka(X, Y), rel=1e-8)
        assert e.se == pytest.approx(_jackknife(loo_cka), rel=1e-6)
        assert lc.linear_cka() == e.value and isinstance(lc.match_auc(), float)
        auc = lc.match_auc_estimate()
        assert auc.value == lc.match_auc() and auc.low < auc.value < auc.high
        se = lc.similarity_se()
        assert se.shape == (len(c.eps),)
        low, high = lc.similarity_interval([0.3])
        assert low[0] <= lc.similarity(0.3) <= high[0]
    assert c["3"].baseline_thresholds is not None and c["3"].baseline_thresholds.leave_out is None


def test_fewer_batches_than_groups_is_an_error_naming_groups():
    data = image_batches(3)
    with pytest.raises(ValueError, match=r"groups=4 needs at least 4 batches .* data has 3 batches"):
        compare(small_cnn(1), small_cnn(2), data, "6", groups=4)
    with pytest.raises(ValueError, match="groups must be >= 2"):
        compare(small_cnn(1), small_cnn(2), data, "6", groups=1)
    with pytest.raises(TypeError, match="groups must be None or an int"):
        nsm.torch.compare_all(small_cnn(1), small_cnn(2), data, "6", groups=2.5)


def test_table_export_save_load_and_figure_keep_the_error_bars(tmp_path):
    data = image_batches(6)
    c = compare(small_cnn(1), small_cnn(2), data, ["3", "6"], eps=[0.3, 0.5], groups=3)
    table = c.table()
    lc = c["6"]
    se = lc.similarity_se()
    assert f"{lc.similarity(0.3):.3f} ± {se[0]:.3f}" in table
    assert f"{lc.match_auc():.3f} ± {lc.match_auc_estimate().se:.3f}" in table
    row = c.to_rows()[1]
    assert row["groups"] == 3
    assert row["similarity_se_0.3"] == pytest.approx(se[0]) and row["similarity_se_0.5"] == pytest.approx(
        se[1]
    )
    assert row["linear_cka_se"] == pytest.approx(lc.linear_cka(se=True).se)
    assert row["match_auc_se"] == pytest.approx(lc.match_auc_estimate().se)
    path = tmp_path / "c.json"
    c.save(path)
    back = Comparison.load(path)
    assert back["6"].gram is None and back["6"].groups == 3
    np.testing.assert_allclose(back["6"].similarity_se(), se)
    assert tuple(back["6"].match_auc_estimate()) == pytest.approx(tuple(lc.match_auc_estimate()))
    assert tuple(back["6"].linear_cka(se=True)) == pytest.approx(tuple(lc.linear_cka(se=True)))
    assert back.table() == table
    c.save(tmp_path / "g.json", grams=True)
    with_grams = Comparison.load(tmp_path / "g.json")
    # The Grams are saved whole: their groups too (they were dropped, and a loaded layer whose
    # linear CKA estimate was not saved then raised in table() and to_rows()).
    assert with_grams["6"].gram.groups == 3 and with_grams["6"].groups == 3
    for got, want in zip(with_grams["6"].gram.leave_one_out(), lc.gram.leave_one_out()):
        np.testing.assert_array_equal(got.matrix, want.matrix)
    with_grams["6"]._measures.clear()  # as if its estimate had not been saved
    assert tuple(with_grams["6"].linear_cka(se=True)) == pytest.approx(tuple(lc.linear_cka(se=True)))
    assert with_grams.table() == table
    # Without groups nothing changes: no ± and no se columns.
    plain = compare(small_cnn(1), small_cnn(2), data, "6", eps=[0.3])
    assert "±" not in plain.table() and "similarity_se_0.3" not in plain.to_rows()[0]
    with pytest.raises(ValueError, match="pass groups="):
        plain["6"].similarity_se()
    figure = tmp_path / "curves.png"
    nsm.plot.plot_curves(c, path=figure)
    assert figure.stat().st_size > 0


def test_compare_all_keeps_groups_per_pair():
    data = image_batches(6)
    a, b = small_cnn(1), small_cnn(2)
    grid = nsm.torch.compare_all(a, b, data, ["3", "6"], samples="inputs", progress=False, groups=3)
    plain = nsm.torch.compare_all(a, b, data, ["3", "6"], samples="inputs", progress=False)
    np.testing.assert_allclose(grid.matrix("linear_cka"), plain.matrix("linear_cka"), rtol=1e-9)
    np.testing.assert_allclose(grid.matrix("match_auc"), plain.matrix("match_auc"), rtol=1e-9)
    se = grid.matrix("linear_cka", se=True)

    # By hand: site "3" averaged over positions (one vector per input), "6" as it is.
    def per_input(model, name):
        acts = _collect_raw(model, data, name)
        return [x.double().mean(dim=(2, 3)).numpy() if x.ndim == 4 else x.double().numpy() for x in acts]

    xa, yb = per_input(a, "3"), per_input(b, "6")
    loo = []
    for k in range(3):
        keep = [i for i in range(len(data)) if i % 3 != k]
        loo.append(_numpy_cka(np.vstack([xa[i] for i in keep]), np.vstack([yb[i] for i in keep])))
    assert se[0, 1] == pytest.approx(_jackknife(loo), rel=1e-5)
    assert np.all(grid.matrix("similarity", eps=0.5, se=True) >= 0)
    assert grid.pair("3", "6").groups == 3
    with pytest.raises(ValueError, match="needs jackknife groups"):
        plain.matrix("cca", se=True)
    with pytest.raises(ValueError, match="similarity_gap"):
        grid.matrix("similarity_gap", eps=0.5, se=True)


def _collect_raw(model, batches, name):
    """Module ``name``'s outputs as the model returned them, one tensor per batch, by hand."""
    module = dict(model.named_modules())[name]
    out = []
    handle = module.register_forward_hook(lambda m, i, o: out.append(o))
    model.eval()
    with torch.no_grad():
        for x in batches:
            model(x[0] if isinstance(x, (tuple, list)) else x)
    handle.remove()
    return out


def test_two_processes_sum_their_groups(tmp_path):
    torch.multiprocessing.spawn(
        distributed_worker,
        args=(2, str(tmp_path / "init"), str(tmp_path), "deal", 2),
        nprocs=2,
        join=True,
    )
    data = image_batches(8)
    # Rank r gets batches r, r+2, ... and deals its own in turn: group 0 holds batches
    # 0, 1, 4, 5 and group 1 batches 2, 3, 6, 7 once summed over the ranks.
    r0 = Comparison.load(tmp_path / "result0.json")
    assert r0["3"].groups == 2
    for k, rest in enumerate(([2, 3, 6, 7], [0, 1, 4, 5])):
        direct = compare(small_cnn(1), small_cnn(2), [data[i] for i in rest], "3")
        np.testing.assert_allclose(r0["3"].thresholds.leave_out[k].x, direct["3"].thresholds.x, atol=1e-8)
        np.testing.assert_allclose(r0["3"].thresholds.leave_out[k].y, direct["3"].thresholds.y, atol=1e-8)
