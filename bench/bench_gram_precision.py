"""Accuracy of the mixed-precision Gram pass (float32 products over blocks of rows, added into
the float64 Gram) against the float64 pass, as a function of the block length, on realistic
post-ReLU layers and on the hard families; and the speed of both passes on 50,000 x (512 + 512).

Run: python -m pytest bench/bench_gram_precision.py --benchmark-disable -s
(prints the accuracy table; NSM_BENCH_SCALE=small for a smoke run).
"""

from __future__ import annotations

import numpy as np
import pytest

import nsm
from bench.layers import SMALL, related_relu_layers
from bench.timing import NOTES, RATIOS, timed
from nsm import _core

D = 2000 if SMALL else 20_000
N = 48 if SMALL else 256
LONG = 20_000 if SMALL else 1_000_000
BLOCKS = [256, 2048, 8192]
DEFAULT_BLOCK = _core._testing.mixed_block_rows()
REALISTIC_BOUND, HARD_BOUND = 1e-5, 1e-3
GRID = np.arange(0, 1.0001, 0.01)


def near_duplicates(rng):
    """Y holds copies of X's neurons with a 1e-3 relative difference (and X holds such pairs
    within itself): the span keeps a tiny difference direction that float32 sums can blur."""
    X, Y = related_relu_layers(D, N, seed=3)
    k = N // 2
    Y[:, :k] = X[:, :k] * (1 + 1e-3 * rng.standard_normal((D, k), dtype=np.float32))
    X[:, k : k + 16] = X[:, :16] * (1 + 1e-3 * rng.standard_normal((D, 16), dtype=np.float32))
    return X, Y


def scales(rng):
    """Neurons scaled by factors from 1e-3 to 1e3."""
    X, Y = related_relu_layers(D, N, seed=4)
    X *= np.logspace(-3, 3, N, dtype=np.float32)[rng.permutation(N)]
    Y *= np.logspace(-3, 3, N, dtype=np.float32)[rng.permutation(N)]
    return X, Y


def nearly_dead(rng):
    """A tenth of the neurons dead, a tenth alive on 1% of the samples at 1e-4 of the others'
    size."""
    X, Y = related_relu_layers(D, N, seed=5)
    for a in (X, Y):
        cols = rng.permutation(N)
        a[:, cols[: N // 10]] = 0
        faint = cols[N // 10 : N // 5]
        mask = rng.random((D, faint.size)) < 0.01
        a[:, faint] = np.where(mask, 1e-4 * a[:, faint] + 1e-4, 0).astype(np.float32)
    return X, Y


def long_stream(rng):
    """10^6 samples of 32 + 32 neurons, streamed in batches of 50,000."""
    chunks = [
        related_relu_layers(50_000 if not SMALL else 5000, 32, seed=10 + i)
        for i in range(LONG // (50_000 if not SMALL else 5000))
    ]
    return chunks


FAMILIES = {
    "realistic": lambda rng: related_relu_layers(D, N, seed=2),
    "near-duplicates": near_duplicates,
    "scales 1e-3..1e3": scales,
    "nearly dead": nearly_dead,
    "10^6 samples": long_stream,
}


def gram_of(data, precision: str) -> nsm.Gram:
    if isinstance(data, list):
        g = nsm.Gram(data[0][0].shape[1], data[0][1].shape[1], precision=precision)
        for X, Y in data:
            g.update(X, Y)
        return g
    return nsm.Gram.from_arrays(data[0], data[1], precision=precision)


def differences(reference: nsm.Thresholds, other: nsm.Thresholds) -> tuple[float, float]:
    a = np.concatenate([reference.x, reference.y])
    b = np.concatenate([other.x, other.y])
    assert np.array_equal(np.isinf(a), np.isinf(b)), "dead neurons differ"
    finite = np.isfinite(a)
    eps_error = float(np.abs(a[finite] - b[finite]).max()) if finite.any() else 0.0
    # The similarity curve on the grid: the share of neurons whose critical eps is <= eps.
    curves = [np.searchsorted(np.sort(t), GRID, side="right") / t.size for t in (a, b)]
    curve_error = float(np.abs(curves[0] - curves[1]).max())
    return eps_error, curve_error


@pytest.mark.parametrize("family", list(FAMILIES))
def test_mixed_against_float64(family):
    rng = np.random.default_rng(0)
    data = FAMILIES[family](rng)
    reference = nsm.match_thresholds(gram_of(data, "float64"))
    row = []
    try:
        for block in BLOCKS:
            _core._testing.set_mixed_block_rows(block)
            eps_error, curve_error = differences(reference, nsm.match_thresholds(gram_of(data, "mixed")))
            row.append(f"{eps_error:.1e} / {curve_error:.2g}")
            if block == DEFAULT_BLOCK:
                default_error = eps_error
    finally:
        _core._testing.set_mixed_block_rows(DEFAULT_BLOCK)
    bound = REALISTIC_BOUND if family == "realistic" else HARD_BOUND
    NOTES.append(
        f"| {family} | " + " | ".join(row) + f" | {'within' if default_error <= bound else 'OVER'} "
        f"the bound {bound:g} |"
    )
    if family == "realistic":  # the bound mixed is documented to meet; the hard ones are reported
        assert default_error <= bound


def test_speed_of_the_mixed_pass():
    d, n = (5000, 64) if SMALL else (50_000, 512)
    X, Y = related_relu_layers(d, n)
    g64 = timed("Gram pass float64", lambda: nsm.Gram.from_arrays(X, Y, precision="float64"), rounds=3)
    gm = timed("Gram pass mixed", lambda: nsm.Gram.from_arrays(X, Y, precision="mixed"), rounds=3)
    scale = np.sqrt(np.outer(np.diag(g64.matrix), np.diag(g64.matrix))) + 1e-300
    assert np.abs(gm.matrix - g64.matrix).max() / scale.max() < 1e-5
    RATIOS.append(
        (
            f"Gram pass speed-up, mixed over float64, {d} x ({n}+{n}) float32",
            "Gram pass float64",
            "Gram pass mixed",
            ">= 3",
        )
    )
    # The ceiling on this machine: the same product by the BLAS NumPy uses, in float32 and in
    # float64 (a SIMD register holds twice as many float32 values, so about 2x on AVX2 and on
    # AVX-512 alike; a 3x mixed pass would need float32 arithmetic 3x float64's).
    B = np.hstack([X, Y])
    B64 = B.astype(np.float64)
    timed("BLAS product B^T B float64", lambda: B64.T @ B64, rounds=3)
    timed("BLAS product B^T B float32", lambda: B.T @ B, rounds=3)
    RATIOS.append(
        (
            "the hardware's ceiling: the BLAS float32 product over the float64 one, same block",
            "BLAS product B^T B float64",
            "BLAS product B^T B float32",
            "-",
        )
    )
    RATIOS.append(
        (
            "nsm's float64 pass (conversion included) over the BLAS float64 product of float64 data",
            "Gram pass float64",
            "BLAS product B^T B float64",
            "-",
        )
    )


NOTES.append(
    "| family | max |Δ critical eps| / max |Δ MMS| on a 0.01 grid, blocks of "
    + ", ".join(str(b) for b in BLOCKS)
    + " rows |"
)
NOTES.append("|---|" + "---|" * len(BLOCKS))
