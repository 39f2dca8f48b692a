"""The match engine in torch: maximum matches and critical ε from a Gram on any torch device.

The same peeling as the C++ core (docs/method.md, "Peeling", "Critical ε"), with the same rules:
the cosine matrix read from the Gram, dead neurons, the rank cutoff ``eps_machine · max(d, n)``,
the zero tolerance (docs/method.md, "The zero tolerance"), ``>= level`` in a level's first
round and ``> level`` in its cascade, and a layer that empties taking everything left. Only the
way a layer's span is kept differs (docs/method.md, "The torch engine"): shaped for a GPU, where
a pivoted Cholesky and Givens downdates are slow and a few large matrix products are fast.

- Each layer's members sit in a *factor order* in which the members still in are always a
  prefix (those expected to leave first sit last).
- The factor is a Cholesky of the members' cosines in that order that skips a member whose
  Schur diagonal is at most the rank cutoff (it is dependent): rank-revealing without pivoting.
  It is blocked in panels: one ``cholesky_ex`` per panel, a sequential skip only in a panel
  that meets a dependent member.
- ``W`` holds every neuron's coordinates against the basis directions in factor order and
  ``cum`` their running sums of squares, so a neuron's residual against any prefix of the
  order is one lookup: ``1 - cum[rows of the prefix, v]``.
- A removal at the end of the order only shortens the prefix. Otherwise the rows from the
  first removed position on are recomputed from the cosines (a Schur complement against the
  rows before it, then the skipping Cholesky): no rotations, no drift, and a dependent member
  whose residual grew past the cutoff joins the basis there.

Internal: ``nsm.match`` builds it for ``engine="torch"``; it needs torch (float64 on the
device: CUDA, ROCm or the CPU; not MPS).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

try:
    import torch
except ImportError:  # pragma: no cover - nsm.match checks before building one
    torch = None  # type: ignore[assignment]

__all__ = ["TorchEngine", "working_set_bytes", "zero_tolerance"]

_F64 = None if torch is None else torch.float64
# Members per panel of the skipping Cholesky: one cholesky_ex and two products per panel.
_PANEL = 128


def zero_tolerance(lower: Any, rank_tol: float) -> float:
    """The largest sin² that counts as 0 against a layer's span (docs/method.md, "The zero
    tolerance"), from ``lower``, the Cholesky factor of the cosines of the layer's first basis
    ``B`` (in any order): ``rank_tol · max_v [C_BB⁻¹]_vv``, clamped to ``[rank_tol,
    sqrt(rank_tol)]``; the core's ``nsm::zero_tolerance``."""
    widest = math.sqrt(rank_tol)
    k = lower.shape[0]
    if k == 0:
        return rank_tol
    # 1 / pivot² <= max_v [C_BB⁻¹]_vv in every order: a factor that reaches the clamp by its own
    # smallest pivot needs no inverse.
    if rank_tol / float((lower.diagonal() ** 2).min()) >= widest:
        return widest
    eye = torch.eye(k, dtype=_F64, device=lower.device)
    inverse = torch.linalg.solve_triangular(lower, eye, upper=False)
    return max(min(rank_tol * float((inverse**2).sum(0).max()), widest), rank_tol)


#: As the core's kMatchSlackUlps (cpp/include/nsm/match_engine.hpp): a maximum match at eps peels
#: to eps plus this many of its ulps, so that max_match(g, t_v) contains neuron v.
MATCH_SLACK_ULPS = 64.0


def match_level(eps: float) -> float:
    """The level a maximum match at ``eps`` peels to (the core's ``match_level``)."""
    return eps + MATCH_SLACK_ULPS * np.finfo(np.float64).eps * eps


def working_set_bytes(n_x: int, n_y: int) -> int:
    """The most device memory (bytes) the torch engine holds for a pair of ``n_x`` + ``n_y``
    live neurons, an upper estimate: the cosine matrix (``n²`` float64), the two spans'
    tables (``2m² + 2mt + (m + 1)t`` each for m members and t other-layer neurons) and the
    largest transient of a first factor (its rows and the products behind them,
    ``max(m n, m² + 3mt)``). Building the engine from a Gram holds the Gram and its scaled
    copy at once (``3 n²``), counted too.

    >>> round(working_set_bytes(3072, 3072) / 2**30, 2)
    1.27
    """
    n = n_x + n_y

    def tables(m: int, t: int) -> int:
        return 2 * m * m + 2 * m * t + (m + 1) * t

    def transient(m: int, t: int) -> int:
        return max(m * n, m * m + 3 * m * t)

    peeling = n * n + tables(n_x, n_y) + tables(n_y, n_x) + max(transient(n_x, n_y), transient(n_y, n_x))
    return 8 * max(3 * n * n, peeling)


def _skip_cholesky(s: Any, so: Any, tol: float) -> tuple[Any, Any, Any]:
    """In-order rank-revealing Cholesky of the PSD block ``s`` (w x w, members in factor order)
    with the rows for the columns ``so`` (w x t).

    A member whose Schur diagonal against the members kept before it is <= tol is dependent and
    skipped. Returns (basis flags (w), R (k x w): the basis directions' coordinates of the
    members, Ro (k x t): those of the other columns). A member gets coordinates on the
    directions up to its own position (later ones are 0 for a basis member, rounding-small for
    a dependent one, and never read)."""
    w, t = s.shape[0], so.shape[1]
    dev = s.device
    rm = torch.zeros(w, w, dtype=_F64, device=dev)
    ro = torch.zeros(w, t, dtype=_F64, device=dev)
    basis = torch.zeros(w, dtype=torch.bool, device=dev)
    res = s.diagonal().clone()
    k = 0
    pos = 0
    while pos < w:
        # Residuals only fall as rows are added: one at or below the cutoff now is dependent.
        alive = torch.nonzero(res[pos:] > tol).flatten() + pos
        if alive.numel() == 0:
            break
        panel: Any = alive[:_PANEL]
        last = int(panel[-1])
        p = panel.numel()
        if last - pos + 1 == p:  # no dependent member in the way: slices, not gathers
            panel = slice(pos, last + 1)
            block = s[panel, panel] - rm[:k, panel].T @ rm[:k, panel]
        else:
            block = s[panel][:, panel] - rm[:k, panel].T @ rm[:k, panel]
        lower, keep = _panel_factor(0.5 * (block + block.T), tol)
        kb = lower.shape[0]
        if kb:
            if kb == p:
                chosen = panel
            elif isinstance(panel, slice):
                chosen = torch.arange(pos, last + 1, device=dev)[keep]
            else:
                chosen = panel[keep]
            rk = rm[:k, chosen]
            rows_m = torch.linalg.solve_triangular(lower, s[chosen, pos:] - rk.T @ rm[:k, pos:], upper=False)
            rows_o = torch.linalg.solve_triangular(lower, so[chosen] - rk.T @ ro[:k], upper=False)
            rm[k : k + kb, pos:] = rows_m
            ro[k : k + kb] = rows_o
            res[last + 1 :] -= (rows_m[:, last + 1 - pos :] ** 2).sum(0)
            basis[chosen] = True
            k += kb
        pos = last + 1
    return basis, rm[:k], ro[:k]


def _panel_factor(block: Any, tol: float) -> tuple[Any, Any]:
    """The panel's own factor: ``cholesky_ex`` when every squared pivot exceeds tol (then it is
    the in-order skip rule itself), else the skip rule member by member. Returns (L of the kept
    members, keep flags)."""
    p = block.shape[0]
    lower, info = torch.linalg.cholesky_ex(block)
    if int(info) == 0 and bool((lower.diagonal() ** 2 > tol).all()):
        return lower, torch.ones(p, dtype=torch.bool, device=block.device)
    a = block.clone()
    keep = torch.zeros(p, dtype=torch.bool, device=block.device)
    cols = []
    for j in range(p):
        d = float(a[j, j])
        if d > tol:
            keep[j] = True
            col = a[:, j] / math.sqrt(d)
            col[:j] = 0.0
            cols.append(col)
            a -= torch.outer(col, col)
        else:
            a[j, :] = 0.0
            a[:, j] = 0.0
    if not cols:
        return torch.zeros(0, 0, dtype=_F64, device=block.device), keep
    return torch.stack(cols, 1)[keep], keep


def _cell_cuts(bounds: np.ndarray, cells: int) -> list[float]:
    """Up to ``cells - 1`` cuts of the ε axis at quantiles of ``bounds`` (each live neuron's
    ratio against the whole other layer, a lower bound of its critical ε), each midway between
    two distinct bound values, ascending."""
    v = np.unique(bounds[np.isfinite(bounds) & (bounds > 0)])
    if len(v) < 2 or cells < 2:
        return []
    idx = np.clip(np.searchsorted(v, np.quantile(v, np.linspace(0, 1, cells + 1)[1:-1])), 1, len(v) - 1)
    return [float(c) for c in np.unique(0.5 * (v[idx - 1] + v[idx]))]


def run_from(
    engine: TorchEngine, start: list[_Span], lo: float, keys: tuple[str, ...], first: np.ndarray
) -> tuple[np.ndarray, Any, list[_Span], dict[str, int]]:
    """A cell peeled again from ``start`` (the end of the cell above) down to ``lo``."""
    stats = dict.fromkeys(keys, 0)
    cell = [span.copy(stats) for span in start]
    return first, engine._levels(cell, lo, stats), cell, stats


class _Span:
    """One layer's span over its members in factor order.

    The numbers live on the device: the members' cosines (among themselves, ``c_mm``, and
    against the other layer's live neurons, ``c_mo``), their coordinates on the basis
    directions (``w_m``, ``w_o``) and the running sums of squares ``cum``. The bookkeeping
    lives on the host (numpy): members have local ids (their places in the list the span was
    built from), ``order[:m]`` holds those still in, ``kpos[p]`` counts the basis rows before
    position ``p``. So a round reads the device once (each span's row of ``cum``) and a
    refresh once more (its basis flags)."""

    def __init__(
        self,
        c: Any,
        members: np.ndarray,
        others: np.ndarray,
        tol: float,
        zero_tol: float | None,
        stats: dict[str, int],
    ) -> None:
        n = c.shape[0]
        dev = c.device
        m, t = len(members), len(others)
        self.tol, self.stats, self.ids, self.device = tol, stats, members, dev
        rows = c[torch.from_numpy(members).to(dev)]
        self.c_mm = rows[:, torch.from_numpy(members).to(dev)]  # cosines among the members, by local id
        self.c_mo = rows[:, torch.from_numpy(others).to(dev)]  # against the other layer's neurons
        del rows
        self.local_member = np.full(n, -1, dtype=np.int64)
        self.local_member[members] = np.arange(m)
        self.local_other = np.full(n, -1, dtype=np.int64)
        self.local_other[others] = np.arange(t)
        self.order = np.arange(m)
        self.pos_of = np.arange(m)  # -1 once removed
        self.m = m
        self.kpos = np.zeros(m + 1, dtype=np.int64)
        self.w_m = torch.zeros(max(m, 1), m, dtype=_F64, device=dev)  # rows: basis directions
        self.w_o = torch.zeros(max(m, 1), t, dtype=_F64, device=dev)
        self.cum = torch.zeros(max(m, 1) + 1, t, dtype=_F64, device=dev)  # running sums of w_o²
        basis = self._refresh(0, None)
        if zero_tol is None:
            chosen = torch.from_numpy(np.flatnonzero(basis)).to(dev)
            zero_tol = zero_tolerance(self.w_m[: len(chosen)][:, chosen].T, tol)
        self.zero_tol = zero_tol

    def _refresh(self, p0: int, kept: np.ndarray | None) -> np.ndarray:
        """Positions p0.. now hold the members ``kept`` (local ids, in this order; None: every
        member in local order, the first factor): recompute their rows from the cosines.
        Returns the basis flags of the window."""
        if kept is None:
            kept = np.arange(self.c_mm.shape[0])
            on_dev = torch.from_numpy(kept).to(self.device)
            basis_dev, rm, ro = _skip_cholesky(self.c_mm, self.c_mo, self.tol)  # read, not copied
            r0 = 0
        else:
            r0 = int(self.kpos[p0])
            on_dev = torch.from_numpy(kept).to(self.device)
            pre = self.w_m[:r0][:, on_dev]  # the window's coordinates on the rows before it
            s = self.c_mm[on_dev][:, on_dev] - pre.T @ pre
            so = self.c_mo[on_dev] - pre.T @ self.w_o[:r0]
            basis_dev, rm, ro = _skip_cholesky(s, so, self.tol)
        kb = rm.shape[0]
        w = len(kept)
        self.w_m[r0 : r0 + kb] = 0.0
        self.w_m[r0 : r0 + kb, on_dev] = rm
        self.w_o[r0 : r0 + kb] = ro
        self.cum[r0 + 1 : r0 + kb + 1] = self.cum[r0] + torch.cumsum(ro**2, 0)
        basis = basis_dev.cpu().numpy()
        self.order[p0 : p0 + w] = kept
        self.pos_of[kept] = np.arange(p0, p0 + w)
        self.m = p0 + w
        self.kpos[p0 + 1 : p0 + w + 1] = r0 + np.cumsum(basis)
        return basis

    def copy(self, stats: dict[str, int]) -> _Span:
        """An independent copy of the peeling state (the cosines, read-only, are shared)."""
        new = object.__new__(_Span)
        new.__dict__.update(self.__dict__)
        new.stats = stats
        new.order, new.pos_of, new.kpos = self.order.copy(), self.pos_of.copy(), self.kpos.copy()
        new.w_m, new.w_o, new.cum = self.w_m.clone(), self.w_o.clone(), self.cum.clone()
        return new

    def members(self) -> np.ndarray:
        """The members still in (global indices)."""
        return self.ids[self.order[: self.m]]

    def residual_row(self) -> Any:
        """1 - cum of the other layer's live neurons against the span (device, by local
        column): their sin² before the zero tolerance."""
        return 1.0 - self.cum[int(self.kpos[self.m])]

    def residual(self, row: np.ndarray, v: np.ndarray) -> np.ndarray:
        """sin² of the other layer's neurons ``v`` (global indices) from ``row`` (the host copy
        of :meth:`residual_row`): 0 at or below zero_tol, at most 1 (the core's rule)."""
        res = row[self.local_other[v]]
        return np.where(res <= self.zero_tol, 0.0, np.minimum(res, 1.0))

    def remove(self, gone: np.ndarray, leaves_soon: np.ndarray) -> None:
        """Removes members ``gone`` (global indices); ``leaves_soon`` (by global index, higher:
        sooner) orders a recomputed window, those expected to leave first last."""
        if len(gone) == 0:
            return
        local = self.local_member[gone]
        p0 = int(self.pos_of[local].min())
        self.pos_of[local] = -1
        if p0 >= self.m - len(gone):  # exactly the end of the order: the prefix shrinks
            self.stats["tail_removals"] += 1
            self.m -= len(gone)
            return
        window = self.order[p0 : self.m]
        kept = window[self.pos_of[window] >= 0]
        kept = kept[np.argsort(leaves_soon[self.ids[kept]], kind="stable")]
        self.stats["refreshes"] += 1
        self.stats["refreshed_members"] += len(kept)
        self._refresh(p0, kept)


class TorchEngine:
    """The match engine of one pair of layers from their Gram, on a torch device in float64.

    The same interface as the core's ``MatchEngine`` (``dead``, ``rank_tol``, ``ratios()``,
    ``thresholds()``, ``max_match(eps)``), returning numpy arrays; ``name`` is ``"torch"``.
    ``stats`` counts what the last call did: levels, rounds (removal batches), removals that
    only shortened a prefix, refreshes and the members they recomputed.
    """

    name = "torch"

    def __init__(self, gram: Any, n_x: int, n_samples: int, dead_tol: float, device: Any = None) -> None:
        if isinstance(gram, torch.Tensor):
            g = gram.detach().to(dtype=_F64, device=gram.device if device is None else device)
        else:
            g = torch.from_numpy(np.array(gram, dtype=np.float64, copy=True)).to(device or "cpu")
        n = g.shape[0]
        if g.ndim != 2 or g.shape[1] != n or n < 2:
            raise ValueError(f"gram must be square with at least 2 rows, got shape {tuple(g.shape)}")
        if not 1 <= n_x < n:
            raise ValueError(f"n_x must be in [1, {n - 1}], got {n_x}")
        if not bool(torch.isfinite(g).all()):
            raise ValueError("gram contains NaN or Inf")
        self.device = g.device
        self.n, self.n_x = n, n_x
        self.rank_tol = float(np.finfo(np.float64).eps) * max(int(n_samples), n)
        diag = g.diagonal().clone()
        side_max = torch.where(torch.arange(n, device=g.device) < n_x, diag[:n_x].max(), diag[n_x:].max())
        dead = ~(diag > dead_tol * side_max) | ~(diag > 0)
        scale = torch.where(dead, torch.zeros_like(diag), torch.rsqrt(torch.where(dead, 1.0, diag)))
        c = g * scale[:, None] * scale[None, :]
        c.diagonal().copy_((~dead).to(_F64))
        self._c = c
        self.dead = dead.cpu().numpy()
        self.stats: dict[str, int] = {}

    def _live(self) -> tuple[np.ndarray, np.ndarray]:
        live = np.flatnonzero(~self.dead)
        return live[live < self.n_x], live[live >= self.n_x]

    # The peeling state: two spans and who is in.
    def _start(self, order_by_ratio: bool = True) -> list[_Span] | None:
        """Both layers' spans over their live neurons, or None when a layer has none. The first
        state is the core's: X's factor in index order, Y's ordered by its ratios against X,
        X's again by its ratios against Y (so that removals sit near the ends of the orders)."""
        self.stats = dict.fromkeys(("levels", "rounds", "tail_removals", "refreshes", "refreshed_members"), 0)
        xs, ys = self._live()
        if len(xs) == 0 or len(ys) == 0:
            return None
        tol, st = self.rank_tol, self.stats
        first_x = _Span(self._c, xs, ys, tol, None, st)
        if not order_by_ratio:
            return [first_x, _Span(self._c, ys, xs, tol, None, st)]
        res_y = first_x.residual(first_x.residual_row().cpu().numpy(), ys)
        zero_tol_x = first_x.zero_tol
        del first_x  # at most two spans at a time (working_set_bytes)
        span_y = _Span(self._c, ys[np.argsort(res_y, kind="stable")], xs, tol, None, st)
        res_x = span_y.residual(span_y.residual_row().cpu().numpy(), xs)
        span_x = _Span(self._c, xs[np.argsort(res_x, kind="stable")], ys, tol, zero_tol_x, st)
        return [span_x, span_y]

    def _ratios(self, spans: list[_Span]) -> tuple[np.ndarray, np.ndarray]:
        """The neurons still in (X's then Y's) and their ratios (by global index; NaN
        elsewhere), from one read of the device."""
        x_in, y_in = spans[0].members(), spans[1].members()
        rows = torch.cat([spans[1].residual_row(), spans[0].residual_row()]).cpu().numpy()
        t_x = spans[1].c_mo.shape[1]  # X's live neurons: the columns of Y's span
        r = np.full(self.n, np.nan)
        r[x_in] = np.sqrt(spans[1].residual(rows[:t_x], x_in))
        r[y_in] = np.sqrt(spans[0].residual(rows[t_x:], y_in))
        return np.concatenate([x_in, y_in]), r

    def _cascade(
        self, spans: list[_Span], level: float, inclusive: bool, stats: dict[str, int] | None = None
    ) -> list[np.ndarray]:
        stats = self.stats if stats is None else stats
        removed: list[np.ndarray] = []
        first = True
        while True:
            both, r = self._ratios(spans)
            if spans[0].m == 0 or spans[1].m == 0:
                batch = both
            else:
                rb = r[both]
                batch = both[(rb > level) | ((rb >= level) & (first and inclusive))]
            if len(batch) == 0:
                return removed
            stats["rounds"] += 1
            # Each window is re-sorted by the ratios before this round's removals.
            spans[0].remove(batch[batch < self.n_x], r)
            spans[1].remove(batch[batch >= self.n_x], r)
            removed.append(batch)
            first = False

    def ratios(self) -> np.ndarray:
        """Each neuron's ratio against the whole other layer's span (0 for dead neurons, 1 when
        the other layer is all dead)."""
        out = np.zeros(self.n)
        xs, ys = self._live()
        if len(xs) == 0 or len(ys) == 0:
            out[~self.dead] = 1.0
            return out
        spans = self._start(order_by_ratio=False)
        assert spans is not None
        both, r = self._ratios(spans)
        out[both] = r[both]
        return out

    def _levels(self, spans: list[_Span], lo: float, stats: dict[str, int]) -> list[tuple[np.ndarray, float]]:
        """Peels level after level while the level is above ``lo``: (neurons, level) pairs."""
        out: list[tuple[np.ndarray, float]] = []
        while spans[0].m + spans[1].m > 0:
            both, r = self._ratios(spans)
            level = float(r[both].max())
            if level <= lo:
                break
            stats["levels"] += 1
            out.extend((batch, level) for batch in self._cascade(spans, level, True, stats))
        return out

    def thresholds(self, cells: int = 1, workers: int = 1) -> np.ndarray:
        """Each neuron's critical ε (inf for dead neurons, and for all when a layer has no live
        neuron).

        ``cells`` > 1 cuts the ε axis into that many cells (docs/method.md, "The torch engine"):
        each starts from the maximum match at its upper cut and peels its own levels, so the
        cells are independent chains of rounds; ``workers`` threads run them side by side (on
        CUDA each on its own stream). The same thresholds, to rounding.
        """
        t = np.full(self.n, np.inf)
        spans = self._start()
        if spans is None:
            return t
        if cells > 1:
            return self._thresholds_in_cells(spans, cells, workers)
        for batch, level in self._levels(spans, -math.inf, self.stats):
            t[batch] = level
        return t

    def _thresholds_in_cells(self, spans: list[_Span], cells: int, workers: int) -> np.ndarray:
        both, r = self._ratios(spans)
        bounds = [-math.inf, *_cell_cuts(r[both], cells), math.inf]
        keys = tuple(self.stats)

        def run(g: int, start: list[_Span]) -> tuple[np.ndarray, Any, list[_Span], dict[str, int]]:
            stats = dict.fromkeys(keys, 0)
            cell = [span.copy(stats) for span in start]
            if math.isfinite(bounds[g + 1]):
                self._cascade(cell, bounds[g + 1], False, stats)  # the cell's start: MM(upper cut)
            first = self._mask(cell)
            return first, self._levels(cell, bounds[g], stats), cell, stats

        g_all = range(len(bounds) - 1)
        if workers > 1:
            results = self._side_by_side(run, g_all, spans, workers)
        else:
            results = [run(g, spans) for g in g_all]
        # Where the cells meet, the set one peeled down to is the set the next started from;
        # a near-tie at a cut can break that: then the lower cell is peeled again from the end
        # of the one above it.
        reruns = 0
        for g in range(len(results) - 1, 0, -1):
            end = self._mask(results[g][2])
            if not np.array_equal(end, results[g - 1][0]):
                reruns += 1
                results[g - 1] = run_from(self, results[g][2], bounds[g - 1], keys, end)
        t = np.full(self.n, np.inf)
        for _, assigned, _, _ in results:
            for batch, level in assigned:
                t[batch] = level
        total = dict.fromkeys(keys, 0)
        for *_, stats in results:
            for k in keys:
                total[k] += stats[k]
        total["cells"] = len(results)
        total["cell_reruns"] = reruns
        total["busiest_cell_rounds"] = max(stats["rounds"] for *_, stats in results)
        self.stats = total
        return t

    def _side_by_side(self, run: Any, cells: Any, spans: list[_Span], workers: int) -> list[Any]:
        """``run(g, spans)`` for every cell on ``workers`` threads; on CUDA each thread issues
        its work on a stream of its own, after the state it copies is complete."""
        from concurrent.futures import ThreadPoolExecutor

        cuda = self.device.type == "cuda"
        ready: Any = torch.cuda.current_stream(self.device) if cuda else None

        def on_stream(g: int) -> Any:
            if not cuda:
                return run(g, spans)
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(ready)
            with torch.cuda.stream(stream):
                out = run(g, spans)
            stream.synchronize()
            return out

        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(on_stream, cells))

    def _mask(self, spans: list[_Span]) -> np.ndarray:
        mask = np.zeros(self.n, dtype=bool)
        mask[spans[0].members()] = True
        mask[spans[1].members()] = True
        return mask

    def max_match(self, eps: list[float]) -> np.ndarray:
        """Membership masks (len(eps), n) of the maximum match at each ε: one peeling from the
        largest ε down."""
        for e in eps:
            if not 0.0 <= e <= 1.0:
                raise ValueError(f"eps must be in [0, 1], got {e}")
        masks = np.zeros((len(eps), self.n), dtype=bool)
        spans = self._start()
        if spans is None:
            return masks
        for i in sorted(range(len(eps)), key=lambda i: -eps[i]):
            self._cascade(spans, match_level(float(eps[i])), False)
            masks[i, spans[0].members()] = True
            masks[i, spans[1].members()] = True
        return masks
