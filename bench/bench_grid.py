"""nsm.torch.compare_all on every pair of a ResNet-18 replica's ReLU sites against another's
(two seeds), with samples="inputs" and samples="pool": time against the two models' forward
passes alone and peak memory; and, when pytorch-cka is installed, its CKA matrix on the same
models and data in the same run, and how far its minibatch CKA is from nsm's exact linear CKA.

pytorch-cka (PyPI ``pytorch-cka``, imported as ``cka``) hooks modules by name and keeps the
last call of each, flattening (N, C, H, W) outputs to one C*H*W vector per input. It is timed
twice: as a user would call it on the replica's nine ReLU modules, and on the same 17 sites and
the same samples as nsm's samples="inputs" (each call of a ReLU module fed to a probe module
that averages it over positions), which is the grid the target compares and where the two CKA
values are comparable.

Run: python -m pytest bench/bench_grid.py --benchmark-disable -s
(pytorch-cka beside torch: pip install --no-deps pytorch-cka==1.1.3; it needs only torch,
numpy, matplotlib and tqdm, which nsm's test extra installs.)
"""

from __future__ import annotations

import copy
import time
import warnings

import numpy as np
import pytest

from bench.layers import SMALL
from bench.timing import NOTES, RATIOS, TIMES, timed

torch = pytest.importorskip("torch", reason="the torch extra is not installed")

import nsm.torch  # noqa: E402
from nsm.measures import MEASURES  # noqa: E402
from tests.torch_models import resnet18  # noqa: E402

try:
    import cka as pytorch_cka

    if not hasattr(pytorch_cka, "CKA"):  # another package named cka
        pytorch_cka = None
except ImportError:
    pytorch_cka = None

# The sizes: 1,024 inputs at 64 x 64 through two full-width ResNet-18 replicas.
RESNET = (
    dict(inputs=64, size=32, width=8, batch=32) if SMALL else dict(inputs=1024, size=64, width=64, batch=128)
)
EPS = 0.5  # the ε of the similarity-gap matrix timed beside the measures
PAIRS = "ResNet-18 replica, 17 x 17 ReLU sites"


def _images():
    g = torch.Generator().manual_seed(0)
    n, b, s = RESNET["inputs"], RESNET["batch"], RESNET["size"]
    return [torch.randn(min(b, n - i), 3, s, s, generator=g) for i in range(0, n, b)]


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def _peak(fn):
    """(fn(), the peak resident memory it added in bytes): the kernel's high-water mark is reset
    to the current resident set first (/proc/self/clear_refs)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status("VmRSS:")
    out = fn()
    return out, _status("VmHWM:") - before


@pytest.fixture(scope="module")
def setup():
    """The two replicas, the data, and the forward passes of both alone (timed once here)."""
    a, b = resnet18(1, RESNET["width"]), resnet18(2, RESNET["width"])
    data = _images()

    def forwards():
        with torch.no_grad():
            for x in data:
                a(x), b(x)

    forwards()  # warm up
    timed(f"{PAIRS}: forward passes of both models alone", forwards, rounds=2)
    return a, b, data


def _all_measures(a, b, data, samples):
    """compare_all with its defaults (baseline on), then every measure's matrix; returns the
    comparison and the seconds each step took."""
    start = time.perf_counter()
    cross = nsm.torch.compare_all(a, b, data, torch.nn.ReLU, samples=samples, progress=False)
    seconds = {"compare_all (the pass)": time.perf_counter() - start}
    for m in MEASURES:
        start = time.perf_counter()
        cross.matrix(m)  # cca computes svcca and procrustes with it (they share the centring)
        seconds[f"matrix({m!r})"] = time.perf_counter() - start
    return cross, seconds


@pytest.mark.parametrize("samples", ["inputs", "pool"])
def test_compare_all_every_relu_pair(setup, samples):
    a, b, data = setup
    label = f"{PAIRS}, samples={samples!r}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FewSamplesWarning of the narrow pairs of the small run
        (cross, measures), extra = _peak(
            lambda: timed(f"{label}: compare_all + every measure", lambda: _all_measures(a, b, data, samples))
        )
        for step, took in measures.items():
            TIMES[f"{label}: {step}"] = took
        start = time.perf_counter()
        gap = cross.matrix("similarity_gap", eps=EPS)
        TIMES[f"{label}: similarity_gap matrix at ε = {EPS} after that"] = time.perf_counter() - start
    assert cross.shape == (17, 17)
    assert np.isfinite(cross.matrix("linear_cka")).all() and np.isfinite(gap).all()
    RATIOS.append(
        (
            f"{label}: compare_all + every measure / forward passes",
            f"{label}: compare_all + every measure",
            f"{PAIRS}: forward passes of both models alone",
            "-",
        )
    )
    if samples == "inputs":
        _CROSS["inputs"] = cross
        RATIOS.append(
            (
                f"{label}: compare_all + every measure / pytorch-cka on the same grid",
                f"{label}: compare_all + every measure",
                f"{PAIRS}: pytorch-cka on the same grid",
                "<= 1.5",
            )
        )
    NOTES.append(f"{label}: peak memory added by compare_all + every measure {extra / 2**20:.0f} MiB")


_CROSS: dict = {}


class _SpatialMean(torch.nn.Module):
    """One vector per input: the mean over positions (nsm's samples="inputs"); each batch's
    result is also kept in ``seen`` (N x C floats, a small copy)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list = []

    def forward(self, x):
        out = x.mean(dim=tuple(range(2, x.ndim))) if x.ndim > 2 else x
        self.seen.append(out.detach().double())
        return out


def _minibatch_cka_float64(pa, pb) -> np.ndarray:
    """pytorch-cka's own estimator (its ``hsic``: the unbiased HSIC of each batch, summed over
    batches) on the probes' kept batches, in float64: what its minibatch CKA is without
    float32 rounding."""
    from cka.hsic import hsic

    total = None
    for batch in range(len(pa.probes[0].seen)):
        gx = torch.stack([p.seen[batch] @ p.seen[batch].T for p in pa.probes])
        gy = torch.stack([p.seen[batch] @ p.seen[batch].T for p in pb.probes])
        parts = hsic(gx, gy)
        total = parts if total is None else tuple(t + p for t, p in zip(total, parts))
    xy, xx, yy = total
    denominator = torch.sqrt(torch.clamp(xx[:, None] * yy[None, :], min=0.0))
    return torch.clamp(xy / torch.where(denominator == 0, 1e-6, denominator), 0.0, 1.0).numpy()


def _probed(model, sites):
    """A copy of ``model`` whose ReLU calls also go through probe modules ``probes.<k>``, one per
    nsm site (in ``sites`` order), so that pytorch-cka sees each call's spatial mean."""
    model = copy.deepcopy(model)
    model.probes = torch.nn.ModuleList(_SpatialMean() for _ in sites)
    index = {site: k for k, site in enumerate(sites)}
    calls: dict[str, int] = {}
    model.register_forward_pre_hook(lambda *_: calls.clear())
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ReLU):

            def hook(module, inputs, output, name=name):
                k = calls.get(name, 0)
                calls[name] = k + 1
                site = name if name in index else f"{name}#{k}"
                model.probes[index[site]](output)

            module.register_forward_hook(hook)
    return model, [f"probes.{k}" for k in range(len(sites))]


@pytest.mark.skipif(pytorch_cka is None, reason="pytorch-cka is not installed")
def test_pytorch_cka(setup):
    a, b, data = setup
    relus = [n for n, m in a.named_modules() if isinstance(m, torch.nn.ReLU)]

    def natural():
        return pytorch_cka.compute_cka(a, b, [data], layers=relus, device="cpu", progress=False)[0]

    _, extra = _peak(lambda: timed(f"{PAIRS}: pytorch-cka as a user calls it on the ReLU modules", natural))
    sites = list(nsm.torch.compare_all(a, b, data[:1], torch.nn.ReLU, baseline=False, progress=False).sites_a)
    pa, names = _probed(a, sites)
    pb, _ = _probed(b, sites)

    def same_grid():
        return pytorch_cka.compute_cka(pa, pb, [data], layers=names, device="cpu", progress=False)[0]

    estimate, extra_grid = _peak(lambda: timed(f"{PAIRS}: pytorch-cka on the same grid", same_grid))
    _CROSS["pytorch-cka"] = (sites, estimate.double().numpy(), _minibatch_cka_float64(pa, pb))
    NOTES.append(
        f"pytorch-cka {pytorch_cka.__version__}: {len(relus)} x {len(relus)} modules as a user calls it "
        f"(last call of each, flattened), peak memory added {extra / 2**20:.0f} MiB; on the same "
        f"17 x 17 grid as nsm's samples='inputs', {extra_grid / 2**20:.0f} MiB"
    )


def test_minibatch_cka_against_exact():
    """Runs after the two above (pytest keeps file order): their results, compared."""
    if pytorch_cka is None:
        NOTES.append(
            "pytorch-cka is not installed: the comparison with it was not made "
            "(pip install --no-deps pytorch-cka==1.1.3)"
        )
        return
    if "inputs" not in _CROSS or "pytorch-cka" not in _CROSS:
        pytest.skip("needs test_compare_all_every_relu_pair[inputs] and test_pytorch_cka in this run")
    cross = _CROSS["inputs"]
    sites, estimate, estimate64 = _CROSS["pytorch-cka"]
    assert list(cross.sites_a) == sites and list(cross.sites_b) == sites
    exact = cross.matrix("linear_cka")
    diff, diff64 = np.abs(estimate - exact), np.abs(estimate64 - exact)
    NOTES.append(
        f"pytorch-cka's minibatch CKA (batches of {RESNET['batch']}) against nsm's exact linear CKA "
        f"on the same {len(sites)} x {len(sites)} grid ({RESNET['inputs']} inputs): max abs difference "
        f"{diff.max():.3g}, mean {diff.mean():.3g}; its estimator in float64 on the same batches: "
        f"max {diff64.max():.3g}, mean {diff64.mean():.3g} (the rest is its float32 rounding)"
    )
    assert estimate.shape == exact.shape and ((estimate >= 0) & (estimate <= 1)).all()


def test_floor_under_match_auc():
    """Runs after the grid test (pytest keeps file order): every pair's critical ε on one thread
    against LAPACK's dpstrf of both sides of every pair, the factorisations any exact critical ε
    needs, in the same process."""
    if "inputs" not in _CROSS:
        pytest.skip("needs test_compare_all_every_relu_pair[inputs] in this run")
    from scipy.linalg import get_lapack_funcs
    from threadpoolctl import threadpool_limits

    cross = _CROSS["inputs"]
    pairs = [(a, b) for a in cross.sites_a for b in cross.sites_b]
    grams = {p: cross.pair(*p).gram for p in pairs}
    (pstrf,) = get_lapack_funcs(("pstrf",), (np.eye(2),))

    def factorisations():
        for p in pairs:
            m, k = grams[p].matrix, grams[p].n_x
            pstrf(np.asfortranarray(m[:k, :k]), lower=1)
            pstrf(np.asfortranarray(m[k:, k:]), lower=1)

    def thresholds():
        for p in pairs:
            nsm.match_thresholds(grams[p], num_threads=1)

    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        timed(f"{PAIRS}: dpstrf of both sides of every pair, one thread", factorisations, rounds=2)
        timed(f"{PAIRS}: match_thresholds of every pair, one thread", thresholds, rounds=2)
    RATIOS.append(
        (
            f"{PAIRS}: every pair's critical ε / dpstrf of both sides of every pair (one thread)",
            f"{PAIRS}: match_thresholds of every pair, one thread",
            f"{PAIRS}: dpstrf of both sides of every pair, one thread",
            "-",
        )
    )
