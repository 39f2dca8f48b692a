"""A plain-NumPy oracle written from docs/method.md, independent of nsm's core: least squares by SVD
on the raw activations, nothing reused between steps."""

from __future__ import annotations

import numpy as np

DEAD_NORM = 1e-16  # the authors' script's zero-norm cutoff


def unit_columns(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=0)


def ratios_against(targets: np.ndarray, span: np.ndarray) -> np.ndarray:
    """dist(t, span) / ||t|| for each column t, least squares by SVD (the rank cutoff of
    docs/method.md, "Numerics").
    Columns are scaled to unit norm first, so the rank cutoff does not depend on scale."""
    if span.shape[1] == 0:
        return np.ones(targets.shape[1])
    d = span.shape[0]
    s = unit_columns(span)
    t = unit_columns(targets)
    rcond = np.finfo(np.float64).eps * max(d, s.shape[1])
    coef = np.linalg.lstsq(s, t, rcond=rcond)[0]
    # A sine is at most 1; rounding can push an orthogonal vector's to 1 + 2e-16, which would
    # wrongly drop it at eps = 1.
    return np.minimum(np.linalg.norm(s @ coef - t, axis=0), 1.0)


def live(a: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.linalg.norm(a, axis=0) > DEAD_NORM)


def max_match(X: np.ndarray, Y: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """The peeling of docs/method.md, in the authors' order: prune X against Y, then Y against X."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    ix, iy = live(X), live(Y)
    empty = np.array([], dtype=np.int64)
    while True:
        if len(ix) == 0 or len(iy) == 0:
            return empty, empty
        keep_x = ix[ratios_against(X[:, ix], Y[:, iy]) <= eps]
        if len(keep_x) == 0:
            return empty, empty
        keep_y = iy[ratios_against(Y[:, iy], X[:, keep_x]) <= eps]
        if len(keep_y) == 0:
            return empty, empty
        if len(keep_x) == len(ix) and len(keep_y) == len(iy):
            return ix.astype(np.int64), iy.astype(np.int64)
        ix, iy = keep_x, keep_y


def robust_max_match(X, Y, eps: float, margin: float = 1e-6):
    """The oracle's maximum match at eps, or None when it changes within +-margin of eps (a
    near-tie that no floating-point implementation can be held to)."""
    lo = max_match(X, Y, max(0.0, eps - margin))
    hi = max_match(X, Y, min(1.0, eps + margin))
    if not (np.array_equal(lo[0], hi[0]) and np.array_equal(lo[1], hi[1])):
        return None
    return hi


def thresholds(X: np.ndarray, Y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Each neuron's critical eps, to grid resolution: the first grid value whose maximum match
    holds it (inf if none). Neurons 0..n_x-1 are X's."""
    n_x = X.shape[1]
    t = np.full(n_x + Y.shape[1], np.inf)
    for e in sorted(grid, reverse=True):
        mx, my = max_match(X, Y, e)
        t[mx] = e
        t[n_x + my] = e
    return t


def is_match(X, Y, xs, ys, eps: float) -> bool:
    """Is (xs, ys) an eps-match (docs/method.md, "Definitions")? Both sides must be non-empty."""
    if len(xs) == 0 or len(ys) == 0:
        return False
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    return bool(
        np.all(ratios_against(X[:, xs], Y[:, ys]) <= eps)
        and np.all(ratios_against(Y[:, ys], X[:, xs]) <= eps)
    )


def authors_minimal_match(X, Y, eps: float, side: str, v: int):
    """The authors' v-minimal search with their fixed order, from scratch at every trial: try
    each unchecked X neuron of the current set by index, then each Y neuron; keep the removal
    (without shrinking) when v stays in the maximum match of the rest."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    ix, iy = max_match(X, Y, eps)
    if v not in (ix if side == "x" else iy):
        return None
    checked_x = np.zeros(X.shape[1], dtype=bool)
    checked_y = np.zeros(Y.shape[1], dtype=bool)
    (checked_x if side == "x" else checked_y)[v] = True
    while True:
        ux = [u for u in ix if not checked_x[u]]
        uy = [u for u in iy if not checked_y[u]]
        if ux:
            checked_x[ux[0]] = True
            tx, ty = ix[ix != ux[0]], iy
        elif uy:
            checked_y[uy[0]] = True
            tx, ty = ix, iy[iy != uy[0]]
        else:
            return ix, iy
        mx, my = max_match(X[:, tx], Y[:, ty], eps)
        if v in (tx[mx] if side == "x" else ty[my]):
            ix, iy = tx, ty
