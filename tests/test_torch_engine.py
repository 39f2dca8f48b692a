"""The torch engine (engine="torch", on the CPU here) against the C++ core and the SVD oracle:
the same infinities, thresholds within 1e-9, the same maximum matches away from ties."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nsm
from tests import oracle
from tests.cases import examples, nasty_layers, quiet, related_layers, with_layout

torch = pytest.importorskip("torch", reason="the torch extra is not installed")

from nsm.match.engines import choose_engine  # noqa: E402

TOL = 1e-9  # thresholds of the two engines agree to rounding
MARGIN = 1e-6  # an eps this close to a threshold is a tie neither engine can be held to
EPS_GRID = (0.0, 0.02, 0.1, 0.25, 0.4, 0.6, 0.8, 0.95, 1.0)


def all_of(t: nsm.Thresholds) -> np.ndarray:
    return np.concatenate([t.x, t.y])


def assert_same_thresholds(core: nsm.Thresholds, torch_t: nsm.Thresholds) -> None:
    a, b = all_of(core), all_of(torch_t)
    assert np.array_equal(np.isinf(a), np.isinf(b))
    finite = np.isfinite(a)
    assert np.allclose(a[finite], b[finite], rtol=0, atol=TOL), np.abs(a[finite] - b[finite]).max()
    # The number of levels (distinct critical eps, those within rounding of each other as one)
    # is the same peeling's.
    assert levels(a[finite]) == levels(b[finite])
    assert (core.engine, torch_t.engine) == ("core", "torch")
    assert "engine=torch" in repr(torch_t) and "engine" not in repr(core)


def levels(t: np.ndarray) -> int:
    s = np.sort(t)
    return int(len(s) > 0) + int(np.sum(np.diff(s) > TOL))


def away_from_ties(t: np.ndarray, grid) -> list[float]:
    finite = t[np.isfinite(t)]
    return [e for e in grid if not np.any(np.abs(finite - e) <= MARGIN)]


def assert_same_matches(gram: nsm.Gram, core_t: nsm.Thresholds, centered: bool = False) -> None:
    grid = away_from_ties(all_of(core_t), EPS_GRID)
    core = nsm.max_match(gram, grid, engine="core", centered=centered)
    ours = nsm.max_match(gram, grid, engine="torch", centered=centered)
    for a, b in zip(core, ours):
        assert (a.x.tolist(), a.y.tolist()) == (b.x.tolist(), b.y.tolist()), a.eps
        assert b.engine == "torch"
    for e in grid[:3]:  # one eps at a time: the core's other first state
        a = nsm.max_match(gram, e, engine="core", centered=centered)
        b = nsm.max_match(gram, e, engine="torch", centered=centered)
        assert (a.x.tolist(), a.y.tolist()) == (b.x.tolist(), b.y.tolist()), e


@settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(nasty_layers(), st.lists(st.floats(0, 1), min_size=1, max_size=4), st.booleans())
def test_hypothesis_nasty_layers_equal_the_core_and_the_oracle(layers, grid, centered):
    X, Y, layout = layers
    gram = nsm.Gram.from_arrays(with_layout(X, layout), with_layout(Y, layout))
    core = quiet(nsm.match_thresholds, gram, engine="core", centered=centered)
    ours = quiet(nsm.match_thresholds, gram, engine="torch", centered=centered)
    assert_same_thresholds(core, ours)
    if centered:
        return  # the oracle is the uncentred match
    for eps in grid:
        expected = oracle.robust_max_match(X, Y, eps)
        if expected is None:
            continue
        got = ours.max_match(eps)
        assert (got.x.tolist(), got.y.tolist()) == (expected[0].tolist(), expected[1].tolist())
        mm = quiet(nsm.max_match, gram, eps, engine="torch")
        assert (mm.x.tolist(), mm.y.tolist()) == (expected[0].tolist(), expected[1].tolist())


def _gelu(a: np.ndarray) -> np.ndarray:
    return 0.5 * a * (1 + np.tanh(0.7978845608 * (a + 0.044715 * a**3)))


def family(name: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Layer pairs of the design study's families, small."""
    d = 500
    if name == "related":
        return related_layers(rng, d, 60, 50, shared=12, noise=0.3)
    if name == "independent":
        return np.maximum(rng.standard_normal((d, 40)), 0), np.maximum(rng.standard_normal((d, 50)), 0)
    if name == "ffn":
        h = rng.standard_normal((d, 24))
        X = _gelu(h @ rng.standard_normal((24, 64)))
        Y = _gelu(X @ rng.standard_normal((64, 48)) / 8 + 0.3 * rng.standard_normal((d, 48)))
        return X, Y
    if name == "duplicated":
        X, Y = related_layers(rng, d, 40, 40, shared=8, noise=0.2)
        X = np.hstack([X, X[:, :8], 2 * X[:, 3:6] - X[:, 6:9]])
        Y = np.hstack([Y, X[:, :5], Y[:, :4]])
        return X, Y
    if name == "dead":
        X, Y = related_layers(rng, d, 40, 40, shared=8, noise=0.3)
        X[:, ::7] = 0.0
        Y[:, 3] = 0.0
        return X, Y
    if name == "low_rank":
        z = rng.standard_normal((d, 10))
        return z @ rng.standard_normal((10, 40)), np.hstack(
            [z[:, :6] @ rng.random((6, 30)), rng.random((d, 5))]
        )
    if name == "unequal":
        return related_layers(rng, d, 90, 12, shared=6, noise=0.4)
    if name == "few_samples":
        return related_layers(rng, 40, 50, 45, shared=8, noise=0.3)
    raise ValueError(name)


FAMILIES = ("related", "independent", "ffn", "duplicated", "dead", "low_rank", "unequal", "few_samples")


@pytest.mark.parametrize("centered", [False, True])
@pytest.mark.parametrize("name", FAMILIES)
def test_families_equal_the_core(name, centered):
    X, Y = family(name, np.random.default_rng(FAMILIES.index(name)))
    gram = nsm.Gram.from_arrays(X, Y)
    core = quiet(nsm.match_thresholds, gram, engine="core", centered=centered)
    ours = quiet(nsm.match_thresholds, gram, engine="torch", centered=centered)
    assert_same_thresholds(core, ours)
    quiet(assert_same_matches, gram, core, centered)


@pytest.mark.parametrize("name", ["related", "duplicated", "dead", "few_samples"])
def test_families_equal_the_oracle(name):
    X, Y = family(name, np.random.default_rng(FAMILIES.index(name)))
    t = quiet(nsm.match_thresholds, X, Y, engine="torch")
    for eps in (0.0, 0.3, 0.7):
        expected = oracle.robust_max_match(X, Y, eps)
        if expected is None:
            continue
        got = t.max_match(eps)
        assert (got.x.tolist(), got.y.tolist()) == (expected[0].tolist(), expected[1].tolist())


def test_ratios_equal_the_oracle(rng):
    from nsm.match._torch_engine import TorchEngine

    X, Y = family("duplicated", rng)
    gram = nsm.Gram.from_arrays(X, Y)
    r = TorchEngine(gram.matrix, gram.n_x, gram.n_samples, 1e-20).ratios()
    assert np.allclose(r[: X.shape[1]], oracle.ratios_against(X, Y), atol=1e-7)
    assert np.allclose(r[X.shape[1] :], oracle.ratios_against(Y, X), atol=1e-7)


def test_one_layer_all_dead_and_tiny_layers():
    X = np.zeros((20, 3))
    Y = np.random.default_rng(0).random((20, 2))
    t = nsm.match_thresholds(X, Y, engine="torch")
    assert np.isinf(all_of(t)).all()
    assert nsm.max_match(X, Y, 1.0, engine="torch").similarity == 0.0
    one = np.random.default_rng(1).random((20, 1))
    t1 = nsm.match_thresholds(one, 2 * one, engine="torch")
    assert all_of(t1).tolist() == [0.0, 0.0]


def test_groups_and_match_auc_use_the_engine(rng):
    X, Y = family("related", rng)
    core = nsm.match_thresholds(X, Y, groups=3, engine="core")
    ours = nsm.match_thresholds(X, Y, groups=3, engine="torch")
    assert ours.leave_out is not None and core.leave_out is not None
    for a, b in zip(core.leave_out, ours.leave_out):
        assert_same_thresholds(a, b)
    assert ours.max_match(0.5).engine == "torch"
    auc_core = nsm.measures.match_auc(X, Y, engine="core")
    auc_ours = nsm.measures.match_auc(X, Y, engine="torch")
    assert abs(auc_core - auc_ours) <= TOL


def test_auto_picks_the_core_on_the_cpu(rng):
    X, Y = family("independent", rng)
    assert nsm.match_thresholds(X, Y).engine == "core"
    assert nsm.max_match(X, Y, 0.5, device="cpu").engine == "core"
    assert nsm.match_thresholds(X, Y, engine="torch", device="cpu").engine == "torch"
    # A GPU device picks the torch engine (decided without running on one).
    assert choose_engine("auto", torch.device("cuda")) == "torch"
    assert choose_engine("auto", None, torch.device("cuda", 0)) == "torch"
    assert choose_engine("auto", torch.device("cpu")) == "core"
    assert choose_engine("core", None) == "core"


def test_bad_engine_and_device(rng):
    X, Y = family("independent", rng)
    with pytest.raises(ValueError, match="engine must be one of"):
        nsm.max_match(X, Y, 0.5, engine="gpu")
    with pytest.raises(ValueError, match="engine must be one of"):
        nsm.match_thresholds(X, Y, engine=None)
    with pytest.raises(ValueError, match="device must be a torch device"):
        nsm.match_thresholds(X, Y, engine="torch", device="no-such-device")
    with pytest.raises(ValueError, match="engine='core' runs on the CPU"):
        nsm.match_thresholds(X, Y, engine="core", device="cuda")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            nsm.match_thresholds(X, Y, device="cuda")  # auto: the torch engine on a GPU
    with pytest.raises(ValueError, match="MPS"):
        nsm.match_thresholds(X, Y, engine="torch", device="mps")


def test_without_torch_a_clear_error():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np, nsm\n"
        "X = np.random.default_rng(0).random((50, 3))\n"
        "assert nsm.match_thresholds(X, X).engine == 'core'\n"
        "try:\n"
        "    nsm.match_thresholds(X, X, engine='torch')\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "needs PyTorch" in out.stdout and "pip install" in out.stdout


def test_compare_with_the_torch_engine_gives_what_the_core_gives():
    import nsm.torch

    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(8, 24), torch.nn.ReLU(), torch.nn.Linear(24, 16), torch.nn.ReLU())
    b = torch.nn.Sequential(torch.nn.Linear(8, 24), torch.nn.ReLU(), torch.nn.Linear(24, 16), torch.nn.ReLU())
    data = [torch.randn(128, 8) for _ in range(6)]
    sites = ["1", "3"]
    runs = {
        engine: nsm.torch.compare(a, b, data, sites, progress=False, precision="float64", engine=engine)
        for engine in ("core", "torch")
    }
    for site in sites:
        core, ours = runs["core"][site], runs["torch"][site]
        assert_same_thresholds(core.thresholds, ours.thresholds)
        assert core.baseline_thresholds is not None and ours.baseline_thresholds is not None
        assert_same_thresholds(core.baseline_thresholds, ours.baseline_thresholds)
    assert nsm.torch.compare(a, b, data, "1", progress=False)["1"].thresholds.engine == "core"
    with pytest.raises(ValueError, match="engine must be one of"):
        nsm.torch.compare(a, b, data, "1", progress=False, engine="cuda")


def test_compare_all_with_the_torch_engine_gives_what_the_core_gives():
    import nsm.torch

    def net():
        return torch.nn.Sequential(
            torch.nn.Conv2d(3, 6, 3), torch.nn.ReLU(), torch.nn.Conv2d(6, 8, 3), torch.nn.ReLU()
        )

    torch.manual_seed(0)
    a, b = net(), net()
    data = [torch.randn(16, 3, 8, 8) for _ in range(4)]
    grids = {
        engine: nsm.torch.compare_all(a, b, data, torch.nn.ReLU, progress=False, engine=engine)
        for engine in ("core", "torch")
    }
    for site_a in grids["core"].sites_a:
        for site_b in grids["core"].sites_b:
            if not grids["core"].compared(site_a, site_b):
                continue
            assert_same_thresholds(
                grids["core"].thresholds(site_a, site_b), grids["torch"].thresholds(site_a, site_b)
            )
    assert grids["core"].compared("1", "1") and grids["core"].compared("3", "3")
    auc = {e: g.matrix("match_auc") for e, g in grids.items()}
    assert np.allclose(auc["core"], auc["torch"], atol=TOL, rtol=0, equal_nan=True)


def test_working_set_bounds_what_the_engine_holds(rng):
    from nsm.match._torch_engine import TorchEngine, working_set_bytes

    X, Y = family("unequal", rng)
    gram = nsm.Gram.from_arrays(X, Y)
    engine = TorchEngine(gram.matrix, gram.n_x, gram.n_samples, 1e-20)
    spans = engine._start()
    assert spans is not None
    held = engine._c.nbytes + sum(
        t.nbytes for span in spans for t in vars(span).values() if isinstance(t, torch.Tensor)
    )
    bound = working_set_bytes(gram.n_x, gram.n_y)
    assert held <= bound <= 3 * held


def test_compare_all_counts_the_working_set_in_max_bytes():
    import nsm.torch
    from nsm.match._torch_engine import working_set_bytes

    torch.manual_seed(0)
    a, b = (torch.nn.Sequential(torch.nn.Linear(8, 40), torch.nn.ReLU()) for _ in range(2))
    data = [torch.randn(64, 8) for _ in range(3)]
    grams = 8 * 80 * 80  # one pair's Gram, baseline off
    budget = grams + working_set_bytes(40, 40) // 2
    grid = nsm.torch.compare_all(a, b, data, "1", progress=False, baseline=False, max_bytes=budget)
    assert grid.thresholds("1", "1").engine == "core"
    with pytest.raises(ValueError, match="torch engine's working set"):
        nsm.torch.compare_all(
            a, b, data, "1", progress=False, baseline=False, max_bytes=budget, engine="torch"
        )


@settings(max_examples=examples(30), deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(nasty_layers(), st.sampled_from([2, 5, 16]))
def test_hypothesis_eps_cells_give_the_same_thresholds(layers, cells):
    from nsm.match._torch_engine import TorchEngine

    X, Y, layout = layers
    gram = nsm.Gram.from_arrays(with_layout(X, layout), with_layout(Y, layout))
    core = all_of(quiet(nsm.match_thresholds, gram, engine="core"))
    ours = TorchEngine(gram.matrix, gram.n_x, gram.n_samples, 1e-20).thresholds(cells=cells)
    assert np.array_equal(np.isinf(core), np.isinf(ours))
    finite = np.isfinite(core)
    assert np.allclose(core[finite], ours[finite], rtol=0, atol=TOL)


@pytest.mark.parametrize("name", ["related", "ffn", "duplicated", "dead"])
def test_eps_cells_side_by_side_equal_the_core(name):
    from nsm.match._torch_engine import TorchEngine

    X, Y = family(name, np.random.default_rng(7))
    gram = nsm.Gram.from_arrays(X, Y)
    core = all_of(nsm.match_thresholds(gram, engine="core"))
    engine = TorchEngine(gram.matrix, gram.n_x, gram.n_samples, 1e-20)
    ours = engine.thresholds(cells=8, workers=3)
    assert engine.stats["cells"] > 1 and engine.stats["busiest_cell_rounds"] < engine.stats["rounds"]
    finite = np.isfinite(core)
    assert np.array_equal(np.isinf(core), np.isinf(ours))
    assert np.allclose(core[finite], ours[finite], rtol=0, atol=TOL)


def test_eps_cells_that_do_not_meet_are_peeled_again():
    """A cell whose start is not where the cell above ended (here: its start cascade skipped)
    is peeled again from that end, so the thresholds stay right."""
    from nsm.match._torch_engine import TorchEngine

    class Sabotaged(TorchEngine):
        def _cascade(self, spans, level, inclusive, stats=None):
            if not inclusive and level == self.skip:
                return []
            return super()._cascade(spans, level, inclusive, stats)

    X, Y = family("related", np.random.default_rng(8))
    gram = nsm.Gram.from_arrays(X, Y)
    core = all_of(nsm.match_thresholds(gram, engine="core"))
    from nsm.match import _torch_engine

    engine = Sabotaged(gram.matrix, gram.n_x, gram.n_samples, 1e-20)
    spans = engine._start()
    both, r = engine._ratios(spans)
    engine.skip = _torch_engine._cell_cuts(r[both], 4)[1]
    ours = engine.thresholds(cells=4)
    assert engine.stats["cell_reruns"] >= 1
    finite = np.isfinite(core)
    assert np.allclose(core[finite], ours[finite], rtol=0, atol=TOL)
