"""nsm.max_match against the authors' algorithm, and nsm's Gram pass against NumPy.

Run: python -m pytest bench/bench_max_match.py --benchmark-disable -s
(the table of ratios is printed at the end; NSM_BENCH_SCALE=small for a quick smoke run).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import nsm
from bench.layers import SMALL, related_relu_layers
from bench.timing import NOTES, RATIOS, TIMES, timed

D, N = (3000, 48) if SMALL else (50_000, 512)
EPS = [0.15, 0.2, 0.25, 0.3, 0.5]
BASELINE: dict[float, tuple[list[int], list[int]]] = {}


def authors_max_match(X: np.ndarray, Y: np.ndarray, eps: float):
    """The authors' procedure (docs/method.md, "Peeling"): at every pruning round, least
    squares by SVD (rcond = eps_machine * max(d, n)) on the full float64 activations, nothing
    reused; X is pruned against Y, then Y against the new X."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)

    def ratios(targets, span):
        coef = np.linalg.lstsq(span, targets, rcond=np.finfo(np.float64).eps * max(span.shape))[0]
        return np.linalg.norm(span @ coef - targets, axis=0) / np.linalg.norm(targets, axis=0)

    ix = np.flatnonzero(np.linalg.norm(X, axis=0) > 1e-16)
    iy = np.flatnonzero(np.linalg.norm(Y, axis=0) > 1e-16)
    while len(ix) and len(iy):
        keep_x = ix[ratios(X[:, ix], Y[:, iy]) <= eps]
        if len(keep_x) == 0:
            break
        keep_y = iy[ratios(Y[:, iy], X[:, keep_x]) <= eps]
        if len(keep_x) == len(ix) and len(keep_y) == len(iy):
            return ix.tolist(), iy.tolist()
        ix, iy = keep_x, keep_y
    return [], []


@pytest.fixture(scope="module")
def layers():
    return related_relu_layers(D, N)


@pytest.mark.parametrize("eps", EPS)
def test_one_eps_from_raw_arrays(run, layers, eps):
    X, Y = layers
    expected = timed(f"baseline: eps={eps}", lambda: authors_max_match(X, Y, eps))
    BASELINE[eps] = expected
    got = run(f"nsm: eps={eps} (Gram pass included)", lambda: nsm.max_match(X, Y, eps), rounds=3)
    assert (got.x.tolist(), got.y.tolist()) == expected
    RATIOS.append(
        (
            f"speed-up over the authors' algorithm, eps={eps}",
            f"baseline: eps={eps}",
            f"nsm: eps={eps} (Gram pass included)",
            ">= 8",
        )
    )


def test_all_eps_in_one_call(run, layers):
    X, Y = layers
    got = run("nsm: five eps in one call", lambda: nsm.max_match(X, Y, EPS), rounds=3)
    for result in got:
        if result.eps in BASELINE:
            assert (result.x.tolist(), result.y.tolist()) == BASELINE[result.eps]
    if len(BASELINE) == len(EPS):
        TIMES["baseline: five eps one by one"] = sum(TIMES[f"baseline: eps={e}"] for e in EPS)
        RATIOS.append(
            ("speed-up, five eps", "baseline: five eps one by one", "nsm: five eps in one call", ">= 8")
        )


def test_further_eps_cost(run, layers):
    X, Y = layers
    gram = nsm.Gram.from_arrays(X, Y)
    one = timed("nsm: one eps from a Gram", lambda: nsm.max_match(gram, EPS[0]), rounds=3)
    five = run("nsm: five eps from a Gram", lambda: nsm.max_match(gram, EPS), rounds=3)
    assert (one.x.tolist(), one.y.tolist()) == (five[0].x.tolist(), five[0].y.tolist())
    further = max(TIMES["nsm: five eps from a Gram"] - TIMES["nsm: one eps from a Gram"], 0.0) / 4
    TIMES["nsm: each further eps (derived)"] = further
    RATIOS.append(
        ("each further eps / nsm Gram pass", "nsm: each further eps (derived)", "nsm: Gram pass", "<= 0.10")
    )


def test_gram_pass(run, layers):
    X, Y = layers
    g = run("nsm: Gram pass", lambda: nsm.Gram.from_arrays(X, Y, precision="float64"), rounds=3)
    mixed = timed(
        "nsm: Gram pass, mixed precision", lambda: nsm.Gram.from_arrays(X, Y, precision="mixed"), rounds=3
    )
    scale = np.sqrt(np.outer(np.diag(g.matrix), np.diag(g.matrix))).max()
    assert np.abs(mixed.matrix - g.matrix).max() <= 1e-5 * scale
    RATIOS.append(
        (
            "nsm Gram pass speed-up, mixed over float64",
            "nsm: Gram pass",
            "nsm: Gram pass, mixed precision",
            ">= 3",
        )
    )

    def numpy_gram():
        A = np.hstack([X, Y]).astype(np.float64)
        return A.T @ A

    expected = timed("numpy: float64 A.T @ A, conversion included", numpy_gram, rounds=3)
    np.testing.assert_allclose(g.matrix, expected, rtol=1e-9, atol=1e-6)
    a64 = np.hstack([X, Y]).astype(np.float64)
    timed("numpy: float64 A.T @ A on a float64 copy", lambda: a64.T @ a64, rounds=3)
    RATIOS.append(
        (
            "nsm Gram throughput / numpy (conversion included)",
            "numpy: float64 A.T @ A, conversion included",
            "nsm: Gram pass",
            ">= 0.8",
        )
    )
    RATIOS.append(
        (
            "nsm Gram throughput / numpy (float64 copy given)",
            "numpy: float64 A.T @ A on a float64 copy",
            "nsm: Gram pass",
            ">= 0.8",
        )
    )


ROOT = pathlib.Path(__file__).resolve().parents[1]

# A fixed mmap threshold makes glibc return every large block to the system when it is freed,
# so the peak resident size measures what the call itself allocates.
FIXED_MMAP_ENV = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 17)}

MEMORY_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[3])  # the repository root, where the bench package lives
    from bench.layers import related_relu_layers
    import nsm

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024

    X, Y = related_relu_layers(int(sys.argv[1]), int(sys.argv[2]))
    nsm.Gram.from_arrays(X[:10], Y[:10])  # load the core and its threads first
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak resident size
    before = status("VmRSS:")
    g = nsm.Gram.from_arrays(X, Y)
    print(json.dumps({"extra": status("VmHWM:") - before, "result": g.matrix.nbytes}))
""")


def test_gram_pass_peak_memory():
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(D), str(N), str(ROOT)],
        capture_output=True,
        text=True,
        check=True,
        env=FIXED_MMAP_ENV,
    )
    m = json.loads(out.stdout)
    extra_mib = (m["extra"] - m["result"]) / 2**20
    NOTES.append(
        f"Gram pass peak extra memory beyond the n x n result: {extra_mib:.1f} MiB "
        f"(target <= 64 MiB; inputs {2 * X_BYTES(D, N) / 2**20:.0f} MiB of float32)"
    )
    assert extra_mib <= 64


def X_BYTES(d: int, n: int) -> int:
    return d * n * 4
