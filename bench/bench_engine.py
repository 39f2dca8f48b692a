"""The engine from a Gram (max_match at one eps, match_thresholds) against LAPACK's pivoted
Cholesky (dpstrf) of both layers' blocks, measured in the same run: the factorisations are the
floor of what the engine must do, so the ratio says how much else it spends.

Run: python -m pytest bench/bench_engine.py --benchmark-disable -s
(NSM_BENCH_ENGINE_LARGE=1 adds 4,096 + 4,096 neurons; NSM_BENCH_SCALE=small for a smoke run).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from scipy.linalg import lapack

import nsm
from bench.layers import SMALL
from bench.timing import NOTES, RATIOS, timed

SIZES = [96] if SMALL else [2048] + ([4096] if os.environ.get("NSM_BENCH_ENGINE_LARGE") else [])
EPS = 0.2


def engine_gram(n: int, case: str, seed: int = 0) -> nsm.Gram:
    """The Gram of two post-ReLU layers of n neurons on 3n samples. "match": both layers mix the
    same pool of n/2 features, so nearly every neuron matches at eps = 0.2; "peel": the layers
    share nothing, so the match at eps = 0.2 peels nearly every neuron."""
    rng = np.random.default_rng(seed)
    d = 3 * n
    pool = n // 2

    def features():
        z = rng.standard_normal((d, 64), dtype=np.float32)
        f = z @ rng.standard_normal((64, pool), dtype=np.float32)
        f += rng.standard_normal((d, pool), dtype=np.float32)
        return np.maximum(f, 0, out=f)

    shared = features()
    layers = []
    for _ in range(2):
        pool_f = shared if case == "match" else features()
        mix = rng.random((pool, n), dtype=np.float32) * (rng.random((pool, n)) < 0.02)
        a = pool_f @ mix
        a += 0.02 * np.abs(a).mean() * rng.standard_normal((d, n), dtype=np.float32)
        layers.append(np.maximum(a, 0, out=a))
    A = np.hstack(layers)
    del layers
    G = (A.T @ A).astype(np.float64)  # float32 product: any PSD matrix serves the timing
    G = (G + G.T) / 2
    return nsm.Gram.from_matrix(G, n, d)


def cosine_blocks(gram: nsm.Gram) -> list[np.ndarray]:
    """Each layer's cosine block (the matrix the engine factors), in Fortran order for LAPACK."""
    G = gram.matrix
    blocks = []
    for block in (G[: gram.n_x, : gram.n_x], G[gram.n_x :, gram.n_x :]):
        s = 1.0 / np.sqrt(np.diag(block))
        blocks.append(np.asfortranarray(block * s[:, None] * s[None, :]))
    return blocks


def dpstrf_both(blocks: list[np.ndarray], tol: float) -> None:
    for c in blocks:
        lapack.dpstrf(c, lower=1, tol=tol)


@pytest.fixture(
    scope="module",
    params=[(n, case) for n in SIZES for case in ("match", "peel")],
    ids=lambda p: f"{p[0]}+{p[0]}-{p[1]}",
)
def setting(request):
    n, case = request.param
    return n, case, engine_gram(n, case)


def test_engine_against_dpstrf(setting):
    n, case, gram = setting
    tag = f"{n}+{n} {case}"
    rounds = 3 if n <= 2048 else 1
    blocks = cosine_blocks(gram)
    tol = np.finfo(np.float64).eps * max(gram.n_samples, gram.n)
    timed(f"dpstrf both layers, {tag}", lambda: dpstrf_both(blocks, tol), rounds=rounds)
    m = timed(f"max_match eps={EPS}, {tag}", lambda: nsm.max_match(gram, EPS), rounds=rounds)
    t = timed(f"match_thresholds, {tag}", lambda: nsm.match_thresholds(gram), rounds=rounds)
    assert m.x.tolist() == t.max_match(EPS).x.tolist()
    assert m.y.tolist() == t.max_match(EPS).y.tolist()
    matched = (len(m.x) + len(m.y)) / (2 * n)
    NOTES.append(f"{tag}: max match at eps={EPS} holds {matched:.0%} of the neurons")
    if case == "match" and not SMALL:
        assert matched > 0.8
    if case == "peel" and not SMALL:
        assert matched < 0.2
    for what in (f"max_match eps={EPS}", "match_thresholds"):
        RATIOS.append(
            (f"{what} / dpstrf of both layers, {tag}", f"{what}, {tag}", f"dpstrf both layers, {tag}", "<= 3")
        )


@pytest.mark.parametrize("n", [48] if SMALL else [256, 512, 1024])
def test_threads_by_size(n):
    """The engine's thread rule (a thread per 1,024 neurons of both layers, up to num_threads)
    against two threads forced whatever the size, on the "match" case."""
    from nsm import _core

    gram = engine_gram(n, "match")
    tag = f"{n}+{n}"
    rounds = 5
    default = _core._testing.engine_neurons_per_thread()
    try:
        rule = timed(
            f"match_thresholds 2 threads by the size rule, {tag}",
            lambda: nsm.match_thresholds(gram, num_threads=2),
            rounds,
        )
        _core._testing.set_engine_neurons_per_thread(1)
        forced = timed(
            f"match_thresholds 2 threads forced, {tag}",
            lambda: nsm.match_thresholds(gram, num_threads=2),
            rounds,
        )
    finally:
        _core._testing.set_engine_neurons_per_thread(default)
    np.testing.assert_allclose(rule.x, forced.x, atol=1e-9)
    NOTES.append(f"{tag}: the size rule runs the engine on {_core.engine_threads(2 * n, 2)} thread(s) of 2")
    RATIOS.append(
        (
            f"match_thresholds by the size rule / 2 threads forced, {tag}",
            f"match_thresholds 2 threads by the size rule, {tag}",
            f"match_thresholds 2 threads forced, {tag}",
            "< 1 below 1,024 neurons a thread",
        )
    )


TORCH_SIZES = [48] if SMALL else [512, 1024] + ([2048] if os.environ.get("NSM_BENCH_ENGINE_LARGE") else [])


@pytest.mark.parametrize("case", ["match", "peel"])
@pytest.mark.parametrize("n", TORCH_SIZES)
def test_torch_engine_beside_the_core(n, case):
    """The torch engine (engine="torch", float64 on the CPU) beside the core on the same Gram:
    a ratio only, no target (the torch engine is shaped for a GPU, where tools/device_engine.py
    measures it). With NSM_BENCH_JSON_DIR set, the times go to engine_torch_cpu.json there."""
    torch = pytest.importorskip("torch", reason="the torch extra is not installed")
    gram = engine_gram(n, case)
    tag = f"{n}+{n} {case}"
    rounds = 3 if n <= 512 else 1
    # One thread each: the torch engine's many small operations otherwise wait for a second
    # thread at every step, which a shared machine rarely has ready (17.7 s against 0.8 s at
    # 512 + 512 "peel" on two busy cores), and the core's short parallel regions likewise.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for engine in ("core", "torch"):
            t = timed(
                f"match_thresholds {engine}, {tag}",
                lambda e=engine: nsm.match_thresholds(gram, engine=e, num_threads=1),
                rounds,
            )
            m = timed(
                f"max_match eps={EPS} {engine}, {tag}",
                lambda e=engine: nsm.max_match(gram, EPS, engine=e, num_threads=1),
                rounds,
            )
            assert (m.x.tolist(), m.y.tolist()) == (t.max_match(EPS).x.tolist(), t.max_match(EPS).y.tolist())
    finally:
        torch.set_num_threads(threads)
    for what in ("match_thresholds", f"max_match eps={EPS}"):
        RATIOS.append(
            (f"{what} torch / core (CPU), {tag}", f"{what} torch, {tag}", f"{what} core, {tag}", "none")
        )
    NOTES.append(f"{tag}: both engines ran on one thread of the CPU's {threads}")
    out = os.environ.get("NSM_BENCH_JSON_DIR")
    if out:
        _write_json(os.path.join(out, "engine_torch_cpu.json"), tag)


def _write_json(path: str, tag: str) -> None:
    """Adds this case's times (and the machine) to the JSON file at ``path``."""
    import json
    import platform

    from bench.timing import TIMES

    data = {}
    if os.path.exists(path):
        with open(path) as f:
            data = json.load(f)
    data["machine"] = {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "kernels": nsm._core.kernel_name(),
    }
    data.setdefault("times_s", {}).update({k: v for k, v in TIMES.items() if k.endswith(tag)})
    with open(path, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
