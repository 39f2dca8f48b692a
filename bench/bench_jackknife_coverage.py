"""Do nsm's jackknife intervals cover the truth? A coverage simulation.

A large population of two related post-ReLU layers (bench/layers.py), its values on the whole
population taken as the truth; then many independent draws of a few thousand rows, each
compared with ``groups=K``, counting how often the 95% interval ``value ± 1.96 se`` covers the
truth, for the similarity at two ε, for ``match_auc`` and for ``linear_cka``. Also the
similarity averaged over a window ε ± 0.05 (a smoothed curve, from the same thresholds), and
each statistic's interval around the jackknife's bias-corrected value
``K value - (K - 1) mean(leave-one-out)`` (what ``match_auc(..., correct_bias=True)`` gives).

Run: python -m pytest bench/bench_jackknife_coverage.py --benchmark-disable -s -p no:cacheprovider
(prints the table; NSM_BENCH_SCALE=small for a smoke run of a few seconds).
"""

from __future__ import annotations

import math
import time
from statistics import NormalDist

import numpy as np

import nsm
from bench.layers import SMALL, related_relu_layers
from bench.timing import NOTES, timed
from nsm.jackknife import jackknife_se

POPULATION = 50_000 if SMALL else 400_000
NEURONS = 24 if SMALL else 64  # per layer
DRAWS = 20 if SMALL else 200
ROWS = (1000,) if SMALL else (2000, 8000)
GROUPS = 10 if SMALL else 20
EPS = (0.3, 0.5)
WINDOW = 0.05  # the smoothed similarity averages the curve over ε ± WINDOW
Z = NormalDist().inv_cdf(0.975)


def smoothed(t: nsm.Thresholds, eps: float) -> float:
    """The mean of the similarity curve over [eps - WINDOW, eps + WINDOW]: each neuron adds the
    share of the window at or above its critical ε."""
    every = np.concatenate([t.x, t.y])
    share = np.clip((eps + WINDOW - every) / (2 * WINDOW), 0.0, 1.0)
    return float(np.sum(share[np.isfinite(every)]) / every.size)


def statistics(t: nsm.Thresholds, gram: nsm.Gram) -> dict[str, float]:
    out = {f"similarity ε={e:g}": float(t.similarity(e)) for e in EPS}
    out.update({f"smoothed ε={e:g}±{WINDOW:g}": smoothed(t, e) for e in EPS})
    auc = nsm.measures.match_auc(t)
    out["match_auc"] = auc.value if isinstance(auc, nsm.Estimate) else auc
    cka = nsm.measures.linear_cka(gram)
    out["linear_cka"] = cka.value if isinstance(cka, nsm.Estimate) else cka
    return out


def one_draw(X: np.ndarray, Y: np.ndarray, rows: int, rng: np.random.Generator) -> dict[str, tuple]:
    """Each statistic's (value, se, mean of the leave-one-out values) on one draw."""
    pick = rng.choice(X.shape[0], rows, replace=False)
    gram = nsm.Gram.from_arrays(X[pick], Y[pick], groups=GROUPS, precision="float64")
    t = nsm.match_thresholds(gram)
    full = statistics(t, gram)
    leave = [statistics(lo, g) for lo, g in zip(t.leave_out, gram.leave_one_out())]
    out = {}
    for name, value in full.items():
        values = [s[name] for s in leave]
        out[name] = (value, jackknife_se(values), float(np.mean(values)))
    # The se and the bias-corrected value nsm itself reports must be the ones computed here.
    auc = nsm.measures.match_auc(t, correct_bias=True)
    value, se, loo_mean = out["match_auc"]
    assert math.isclose(auc.se, se, rel_tol=1e-9, abs_tol=1e-15)
    assert math.isclose(auc.value, GROUPS * value - (GROUPS - 1) * loo_mean, rel_tol=1e-9, abs_tol=1e-12)
    return out


def test_coverage_of_the_jackknife_intervals():
    start = time.perf_counter()
    X, Y = related_relu_layers(POPULATION, NEURONS, seed=7)
    truth_gram = nsm.Gram.from_arrays(X, Y, precision="float64")
    truth = statistics(nsm.match_thresholds(truth_gram), truth_gram)
    rng = np.random.default_rng(11)
    coverage: dict[tuple, float] = {}
    for rows in ROWS:
        draws = timed(
            f"jackknife coverage, {DRAWS} draws of {rows} rows",
            lambda rows=rows: [one_draw(X, Y, rows, rng) for _ in range(DRAWS)],
        )
        for name, true in truth.items():
            value, se, loo_mean = (np.array([d[name][i] for d in draws]) for i in range(3))
            covered = np.abs(value - true) <= Z * se
            corrected = GROUPS * value - (GROUPS - 1) * loo_mean
            covered_corrected = np.abs(corrected - true) <= Z * se
            NOTES.append(
                f"| {rows} | {name} | {true:.3f} | {value.mean() - true:+.4f} | {value.std(ddof=1):.4f} | "
                f"{se.mean():.4f} | {np.mean(se == 0):.2f} | {covered.mean():.2f} | "
                f"{covered_corrected.mean():.2f} |"
            )
            assert 0.0 <= covered.mean() <= 1.0 and np.all(se >= 0)
            coverage[(rows, name)] = float(covered.mean())
            coverage[(rows, name, "corrected")] = float(covered_corrected.mean())
    NOTES.append(f"(population {POPULATION:,} rows, whole run {time.perf_counter() - start:.0f} s)")
    if not SMALL:
        # What docs/method.md recommends must keep covering the truth in most draws: linear
        # CKA's interval, and match_auc's around its bias-corrected value (correct_bias=True).
        assert all(coverage[(rows, "linear_cka")] >= 0.85 for rows in ROWS), coverage
        assert all(coverage[(rows, "match_auc", "corrected")] >= 0.85 for rows in ROWS), coverage


NOTES.append("")
NOTES.append(
    f"Jackknife coverage: {NEURONS} + {NEURONS} post-ReLU neurons (bench/layers.py, seed 7), "
    f"population {POPULATION:,} rows (its values are the truth), {DRAWS} draws per row count, "
    f"K = {GROUPS} groups of contiguous rows, nominal 95%"
)
NOTES.append(
    "| rows | statistic | truth | bias (mean - truth) | sd over draws | mean se | share se = 0 "
    "| coverage | coverage, bias-corrected centre |"
)
NOTES.append("|---|---|---|---|---|---|---|---|---|")
