"""The blocks of a grid's Gram that its pairs read: each site's own block, and the block of every
site of model A against every site of model B.

A whole Gram over all the sites of a grid also holds the blocks between two sites of the same
model, which no pair reads. For the 17 ReLU sites of two ResNet-18s (3,904 neurons a model)
those are 45 % of the whole Gram's products and most of its memory; the blocks kept here are
one product of model A's rows against model B's and one small product per site. Rows are
gathered over batches into chunks of about ``CHUNK_ROWS`` samples before the products: with the
128 rows of one batch a product is bound by the memory traffic of its output, and took twice
as long (same process, NumPy and torch alike).

Arithmetic as :class:`nsm.torch.accumulate.DeviceGram`'s torch path (the same precisions, on any
device): ``"float64"`` converts the rows and multiplies in float64; ``"mixed"`` multiplies
float32 rows in float32 over blocks of at most 2,048 rows and adds each block's products into
the float64 blocks (TF32 off), except for rows whose magnitudes fall outside the mixed pass's
range, which take the float64 pass.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch

from .._validation import Precision
from ..gram import Gram, GramParts, GroupDealer, GroupPart
from ..measures import GramBlocks, Range
from .accumulate import MIXED_ROWS, _ieee_matmul, pass_for, takes_mixed_pass

__all__ = ["SiteBlocks", "KeptBlocks"]

CHUNK_ROWS = 1024  # samples gathered before the products (bounded by CHUNK_BYTES too)
CHUNK_BYTES = 64 * 2**20  # of gathered rows, as float32
_FLOAT64_MAX = float(np.finfo(np.float64).max)
# The smallest largest-|value| the core's Gram takes (GramAccumulator::tiny_limit).
_TINY = float(np.sqrt(np.finfo(np.float64).tiny) / np.finfo(np.float64).eps)


class _Blocks:
    """Float64 sums over some samples: each site's own block, the A x B cross block, the
    column sums and the count."""

    def __init__(self, widths_a: list[int], widths_b: list[int], device: torch.device) -> None:
        f64 = torch.float64
        self.own = [torch.zeros(w, w, dtype=f64, device=device) for w in widths_a + widths_b]
        self.cross = torch.zeros(sum(widths_a), sum(widths_b), dtype=f64, device=device)
        self.sums = torch.zeros(sum(widths_a) + sum(widths_b), dtype=f64, device=device)
        self.count = 0

    def add(self, x: torch.Tensor, y: torch.Tensor, cuts: list[tuple[int, int, int]], mixed: bool) -> None:
        """Add the rows ``x`` (model A's sites side by side) and ``y`` (model B's)."""
        if mixed:  # the caller makes float32 matmuls IEEE (_ieee_matmul)
            for start in range(0, x.shape[0], MIXED_ROWS):
                xs, ys = x[start : start + MIXED_ROWS], y[start : start + MIXED_ROWS]
                self.cross.add_(xs.T @ ys)  # float32 products, added into float64
                for k, (side, lo, hi) in enumerate(cuts):
                    part = (xs if side == 0 else ys)[:, lo:hi]
                    self.own[k].add_(part.T @ part)
        else:
            self.cross.addmm_(x.T, y)
            for k, (side, lo, hi) in enumerate(cuts):
                part = (x if side == 0 else y)[:, lo:hi]
                self.own[k].addmm_(part.T, part)
        n_a = x.shape[1]
        self.sums[:n_a] += x.sum(dim=0, dtype=torch.float64)
        self.sums[n_a:] += y.sum(dim=0, dtype=torch.float64)
        self.count += x.shape[0]

    def largest_own(self, side: int, cuts: list[tuple[int, int, int]]) -> float:
        """The largest diagonal entry of a model's sites so far (one read from the device)."""
        diag = [b.diagonal().max() for b, (s, _, _) in zip(self.own, cuts) if s == side and b.numel()]
        return float(torch.stack(diag).max()) if diag else 0.0

    def plus(self, other: _Blocks) -> _Blocks:
        """The sums over both sets of samples (a new set)."""
        out = _Blocks.__new__(_Blocks)
        out.own = [a + b for a, b in zip(self.own, other.own)]
        out.cross, out.sums = self.cross + other.cross, self.sums + other.sums
        out.count = self.count + other.count
        return out


class SiteBlocks:
    """The kept blocks of one grid's Gram, accumulated batch by batch where the activations
    live; with ``groups`` also one set per jackknife group (each batch to the next group in
    turn, as :class:`nsm.torch.accumulate.DeviceGram` deals them).

    Parameters
    ----------
    widths_a, widths_b : list of int
        The widths of the sites of model A and of model B, in the order their rows come.
    device : torch.device
        Where the sums are kept.
    precision : {'float64', 'mixed'}
        See the module docstring.
    groups : int, optional
        Jackknife groups.
    """

    def __init__(
        self,
        widths_a: list[int],
        widths_b: list[int],
        device: torch.device,
        precision: Precision,
        groups: int | None = None,
    ) -> None:
        self.precision = precision
        self.n_a = sum(widths_a)
        # The neurons of the grid's widest pair: rows take the float64 pass until it has
        # enough samples (accumulate.pass_for).
        self.widest_pair = max(widths_a, default=0) + max(widths_b, default=0)
        self.cuts: list[tuple[int, int, int]] = []  # (side, lo, hi) of each site in its model's rows
        for side, widths in ((0, widths_a), (1, widths_b)):
            lo = 0
            for w in widths:
                self.cuts.append((side, lo, lo + w))
                lo += w
        # Without groups one set of sums; with groups one per group only (each batch multiplied
        # once), summed when read.
        self.parts = [_Blocks(widths_a, widths_b, device) for _ in range(groups or 1)]
        self.grouped = groups is not None
        self.dealer = GroupDealer(groups)
        self._gathered: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._gathered_rows = 0
        self._gathered_bytes = 0
        self._gathered_top = [0.0, 0.0]
        self._kept: KeptBlocks | None = None

    @staticmethod
    def nbytes(widths_a: list[int], widths_b: list[int], groups: int | None = None) -> int:
        """Memory of the sums (float64), with ``groups`` a set per group as well."""
        n = sum(widths_a) + sum(widths_b)
        values = sum(w * w for w in widths_a + widths_b) + sum(widths_a) * sum(widths_b) + n
        return 8 * values * (1 + (groups or 0))

    @property
    def n_samples(self) -> int:
        if self._kept is not None:
            return self._kept.n_samples
        return sum(p.count for p in self.parts) + self._gathered_rows

    def update(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Add a batch: ``x`` (samples, model A's sites side by side) and ``y`` (model B's),
        with as many samples each. Values are checked here (NaN, Inf, and magnitudes whose
        squares would overflow or underflow float64, against the sums so far)."""
        if x.shape[0] == 0:  # no samples (every token masked); no unit of the jackknife either
            return
        if self._kept is not None:
            raise RuntimeError("SiteBlocks.update after result(): streaming is over")
        # One reduction a side, read in place: NaN and Inf propagate into the largest |value|.
        top = [float(torch.linalg.vector_norm(t, float("inf"))) for t in (x, y)]
        self._check(top, x.shape[0])
        k = self.dealer.deal(x.shape[0])
        if k is not None:
            self._add(self.parts[k], x, y, top)
            return
        self._gathered.append((x, y))
        self._gathered_rows += x.shape[0]
        self._gathered_bytes += x.shape[0] * (x.shape[1] * x.element_size() + y.shape[1] * y.element_size())
        self._gathered_top = [max(a, b) for a, b in zip(self._gathered_top, top)]
        if self._gathered_rows >= CHUNK_ROWS or self._gathered_bytes >= CHUNK_BYTES:
            self._flush()

    def _check(self, top: list[float], rows: int) -> None:
        """The core's refusals (GramAccumulator::check_magnitudes) for a batch about to be
        added, with the rows gathered so far, against the sums so far (every group's: their
        total is what is read)."""
        rows += self._gathered_rows
        for side, which in enumerate(("model_a", "model_b")):
            t = max(top[side], self._gathered_top[side])
            if not math.isfinite(t):
                raise ValueError(f"{which}'s activations contain NaN or Inf")
            diag = sum(p.largest_own(side, self.cuts) for p in self.parts)
            if not diag + rows * t * t <= _FLOAT64_MAX:
                raise ValueError(
                    f"{which}'s activations hold values up to {t:.3g}: the Gram sums their squares, "
                    "which overflow float64; rescale the activations (the match does not depend on scale)"
                )
            if 0.0 < top[side] < _TINY and diag < _TINY * _TINY:
                raise ValueError(
                    f"{which}'s activations hold values no larger than {top[side]:.3g}: their squares "
                    "underflow float64 and every neuron would look dead; rescale the activations "
                    "(the match does not depend on scale)"
                )

    def finish(self) -> None:
        """Adds the rows gathered so far."""
        self._flush()

    def _flush(self) -> None:
        if not self._gathered:
            return
        xs, ys = zip(*self._gathered)
        top = self._gathered_top
        self._gathered, self._gathered_rows, self._gathered_bytes = [], 0, 0
        self._gathered_top = [0.0, 0.0]
        x = xs[0] if len(xs) == 1 else torch.cat(xs)
        y = ys[0] if len(ys) == 1 else torch.cat(ys)
        self._add(self.parts[0], x, y, top)

    def _add(self, blocks: _Blocks, x: torch.Tensor, y: torch.Tensor, top: list[float]) -> None:
        samples = sum(p.count for p in self.parts) + x.shape[0]
        precision = pass_for(self.precision, samples, self.widest_pair)
        mixed = takes_mixed_pass(precision, (x.dtype, y.dtype), max(top))
        dtype = torch.float32 if mixed else torch.float64
        # Rows converted a slice at a time (a batch of (input, position) samples can be large).
        step = max(1, CHUNK_BYTES // (8 * (x.shape[1] + y.shape[1])))
        with _ieee_matmul() if mixed else contextlib.nullcontext():
            for start in range(0, x.shape[0], step):
                rows = slice(start, start + step)
                blocks.add(x[rows].to(dtype), y[rows].to(dtype), self.cuts, mixed)

    def result(self) -> KeptBlocks:
        """The blocks as float64 NumPy arrays on the host, streaming being over (the sums on
        the device are let go; later calls give the same blocks)."""
        if self._kept is not None:
            return self._kept
        self._flush()
        total = self.parts[0]
        for part in self.parts[1:]:
            total = total.plus(part)
        groups = [(p, p.count) for p in self.parts] if self.grouped else []
        self._kept = KeptBlocks(self, total, groups, self.dealer.dealt)
        self.parts = []
        return self._kept


class KeptBlocks(GramBlocks):
    """A grid's kept blocks on the host: ranges are those of the grid's Gram (model A's sites
    first, then model B's), and a block is a site's own or one of A's sites against one of B's."""

    def __init__(
        self, sites: SiteBlocks, blocks: _Blocks, groups: list[tuple[_Blocks, int]], dealt: int
    ) -> None:
        self.n_samples, self.n_a = blocks.count, sites.n_a
        self.precision: Precision = sites.precision
        self._starts: dict[Range, int] = {}
        for k, (side, lo, hi) in enumerate(sites.cuts):
            off = 0 if side == 0 else sites.n_a
            self._starts[(off + lo, off + hi)] = k
        self._own, self._cross, self._sums = _host(blocks)
        self._groups = [(_host(b), count) for b, count in groups]
        self.dealt = dealt

    def block(self, rows: Range, cols: Range) -> np.ndarray:
        return _block_of(self._own, self._cross, self._starts, self.n_a, rows, cols)

    def sums(self, where: Range) -> np.ndarray:
        return self._sums[where[0] : where[1]]

    def pair_gram(self, a: Range, b: Range) -> Gram:
        """The Gram of site ``a`` of model A against site ``b`` of model B (with the grid's
        jackknife groups), assembled from the blocks: a block of a Gram is a Gram, so it is
        not checked again."""
        matrix, sums = self._assemble(self._own, self._cross, self._sums, a, b)
        groups = tuple(
            GroupPart(*self._assemble(own, cross, s, a, b), count) for (own, cross, s), count in self._groups
        )
        parts = GramParts(
            matrix=matrix,
            column_sums=sums,
            n_samples=self.n_samples,
            n_x=a[1] - a[0],
            precision=self.precision,
            groups=groups or None,
            dealt=self.dealt,
        )
        return Gram.from_parts(parts, checked=False)

    def _assemble(
        self, own: list[np.ndarray], cross: np.ndarray, sums: np.ndarray, a: Range, b: Range
    ) -> tuple[np.ndarray, np.ndarray]:
        na, nb = a[1] - a[0], b[1] - b[0]
        out = np.empty((na + nb, na + nb))
        ab = _block_of(own, cross, self._starts, self.n_a, a, b)
        out[:na, :na] = _block_of(own, cross, self._starts, self.n_a, a, a)
        out[:na, na:], out[na:, :na] = ab, ab.T
        out[na:, na:] = _block_of(own, cross, self._starts, self.n_a, b, b)
        return out, np.concatenate([sums[a[0] : a[1]], sums[b[0] : b[1]]])


def _host(blocks: _Blocks) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """(own blocks, cross block, sums) as read-only float64 NumPy arrays; each own block is
    made exactly symmetric (the float32 products of the mixed pass are symmetric already; the
    float64 GEMM's two triangles may differ in the last bit)."""
    own = []
    for b in blocks.own:
        m = b.cpu().numpy()
        m = np.tril(m) + np.tril(m, -1).T
        m.setflags(write=False)
        own.append(m)
    cross, sums = blocks.cross.cpu().numpy(), blocks.sums.cpu().numpy()
    cross.setflags(write=False)
    sums.setflags(write=False)
    return own, cross, sums


def _block_of(
    own: list[np.ndarray], cross: np.ndarray, starts: dict[Range, int], n_a: int, rows: Range, cols: Range
) -> np.ndarray:
    if rows == cols and rows in starts:
        return own[starts[rows]]
    if rows in starts and cols in starts and rows[1] <= n_a <= cols[0]:
        return cross[rows[0] : rows[1], cols[0] - n_a : cols[1] - n_a]
    raise ValueError(
        f"the grid keeps a site's own block and its sites of model A against those of model B, "
        f"not neurons {rows} against {cols}"
    )
