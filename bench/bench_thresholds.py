"""nsm.match_thresholds (every neuron's critical eps, incremental peeling) against the same
peeling with a from-scratch solve at every step, and against one nsm.max_match.

Run: python -m pytest bench/bench_thresholds.py --benchmark-disable -s
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy.linalg import lapack, solve_triangular

import nsm
from bench.layers import SMALL, related_relu_layers
from bench.timing import NOTES, RATIOS, timed

D, N = (2000, 40) if SMALL else (20_000, 1024)


@pytest.fixture(scope="module")
def gram():
    X, Y = related_relu_layers(D, N, seed=1)
    return nsm.Gram.from_arrays(X, Y)


def from_scratch_thresholds(gram: nsm.Gram, dead_tol: float = 1e-20) -> np.ndarray:
    """The thresholds' peeling (docs/method.md), with every ratio recomputed from scratch at every step: a
    LAPACK pivoted Cholesky (dpstrf) of each layer's current cosine matrix and a triangular
    solve for the other layer's neurons."""
    G = np.array(gram.matrix)
    n, n_x = gram.n, gram.n_x
    diag = np.diag(G).copy()
    side = np.arange(n) >= n_x
    dead = np.zeros(n, dtype=bool)
    for s in (False, True):
        dead[side == s] = diag[side == s] <= dead_tol * diag[side == s].max()
    scale = np.where(dead, 0.0, 1.0 / np.sqrt(np.where(dead, 1.0, diag)))
    C = G * scale[:, None] * scale[None, :]
    tol = np.finfo(np.float64).eps * max(gram.n_samples, n)

    def ratios(alive):
        r = np.zeros(n)
        for s in (False, True):
            members = np.flatnonzero(alive & (side == s))
            targets = np.flatnonzero(alive & (side != s))
            if len(targets) == 0:
                continue
            if len(members) == 0:
                r[targets] = 1.0
                continue
            L, piv, rank, _ = lapack.dpstrf(C[np.ix_(members, members)], lower=1, tol=tol)
            basis = members[piv[:rank] - 1]
            W = solve_triangular(L[:rank, :rank], C[np.ix_(basis, targets)], lower=True)
            res = np.clip(1.0 - np.sum(W * W, axis=0), 0.0, 1.0)
            r[targets] = np.sqrt(np.where(res <= tol, 0.0, res))
        return r

    t = np.full(n, np.inf)
    alive = ~dead
    if not (alive & ~side).any() or not (alive & side).any():
        return t
    while alive.any():
        r = ratios(alive)
        level = r[alive].max()
        removed = alive & (r >= level)
        alive = alive & ~removed
        while alive.any():
            if not (alive & ~side).any() or not (alive & side).any():
                more = alive.copy()
            else:
                more = alive & (ratios(alive) > level)
            if not more.any():
                break
            removed |= more
            alive = alive & ~more
        t[removed] = level
    return t


def test_thresholds_against_from_scratch_peeling(run, gram):
    expected = timed("from-scratch peeling", lambda: from_scratch_thresholds(gram))
    t = run("nsm: match_thresholds", lambda: nsm.match_thresholds(gram), rounds=3)
    got = np.concatenate([t.x, t.y])
    np.testing.assert_array_equal(np.isinf(got), np.isinf(expected))
    finite = np.isfinite(got)
    np.testing.assert_allclose(got[finite], expected[finite], atol=1e-6)
    RATIOS.append(
        (
            "thresholds: speed-up over from-scratch peeling",
            "from-scratch peeling",
            "nsm: match_thresholds",
            ">= 20",
        )
    )


def test_thresholds_against_one_max_match(run, gram):
    t = nsm.match_thresholds(gram)
    # An eps half-way between two breakpoints of the curve (at a breakpoint, a tie).
    breaks = t.curve().breakpoints
    i = int(np.searchsorted(breaks, t.eps_for(0.5)))
    eps = float((breaks[i] + breaks[i + 1]) / 2) if i + 1 < len(breaks) else float(breaks[i])
    m = run("nsm: one max_match from the same Gram", lambda: nsm.max_match(gram, eps), rounds=3)
    assert m.x.tolist() == t.max_match(eps).x.tolist()
    timed("nsm: match_thresholds", lambda: nsm.match_thresholds(gram), rounds=3)
    RATIOS.append(
        (
            "thresholds / one max_match",
            "nsm: match_thresholds",
            "nsm: one max_match from the same Gram",
            "<= 3",
        )
    )


# A fixed mmap threshold makes glibc return every large block to the system when it is freed,
# so the peak resident size measures what the call itself allocates.
FIXED_MMAP_ENV = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 17)}

MEMORY_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import nsm

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024

    n = int(sys.argv[1])
    rng = np.random.default_rng(0)
    A = np.maximum(rng.standard_normal((4 * n, 2 * n)), 0)
    g = nsm.Gram.from_matrix(A.T @ A, n, 4 * n)
    del A
    g.matrix
    nsm.match_thresholds(nsm.Gram.from_matrix(np.eye(4) + 1, 2, 8))  # load everything first
    open("/proc/self/clear_refs", "w").write("5")
    before = status("VmRSS:")
    nsm.match_thresholds(g)
    print(json.dumps({"extra": status("VmHWM:") - before, "gram": g.matrix.nbytes}))
""")


def test_thresholds_peak_memory():
    sizes = (20, 40) if SMALL else (512, 1024)
    multiples = []
    for n in sizes:
        out = subprocess.run(
            [sys.executable, "-c", MEMORY_SCRIPT, str(n)],
            capture_output=True,
            text=True,
            check=True,
            env=FIXED_MMAP_ENV,
        )
        m = json.loads(out.stdout)
        multiples.append(m["extra"] / m["gram"])
        NOTES.append(
            f"match_thresholds, {n} + {n} neurons: peak extra memory "
            f"{m['extra'] / 2**20:.1f} MiB = {m['extra'] / m['gram']:.1f} x the Gram"
        )
    if not SMALL:
        # O(n^2): the multiple of the Gram's size does not grow with n (levels grow with n).
        assert multiples[1] <= 1.25 * multiples[0] + 1
        assert multiples[1] <= 12
