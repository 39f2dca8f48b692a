"""The Gram matrix of two layers' activations, accumulated in float64 over sample batches."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import numpy as np

from .. import _core
from .._arrays import as_core_dtype, read_in_place
from .._validation import (
    DEFAULT_PRECISION,
    Precision,
    check_batch,
    check_column_sums,
    check_count,
    check_gram_matrix,
    check_groups,
    check_layer_size,
    check_precision,
    check_threads,
)
from . import npz
from .centering import rank_cutoff
from .parts import GramParts, GroupDealer, GroupPart, read_only

__all__ = ["Gram"]


class Gram:
    """The Gram matrix ``G = AᵀA`` of ``A = [X Y]`` (float64) and the column sums of ``A``.

    Everything nsm computes about two layers depends on the activations only through ``G``
    (docs/method.md, "The Gram formulation"), so activations can be streamed batch by batch and
    never stored. Neurons ``0 .. n_x-1`` of ``G`` are layer X's, ``n_x .. n_x+n_y-1`` layer Y's.

    A Gram may be updated from several threads at once (say, one per data-loader worker): the
    core serializes the updates, so the result equals the same updates made one after another
    (up to the order of floating-point sums), and ``matrix``, ``save`` or ``merge`` during an
    update see the Gram between two whole updates. An update whose squares would overflow
    float64, or whose values are all so small that their squares underflow, is refused.

    Parameters
    ----------
    n_x, n_y : int
        Number of neurons of each layer.
    precision : {"float64", "mixed"}
        How :meth:`update` multiplies float32 activations: ``"float64"`` (the default) converts
        every value to float64 first; ``"mixed"`` forms float32 products over blocks of 2,048
        rows and adds each block into the float64 Gram (about twice as fast). Float64 input, and
        float32 batches whose largest magnitude is above 1e15 or below 1e-5, always take the
        float64 pass. Mixed kept every critical eps within 1e-5 of the float64 pass on realistic
        layers, but moved them by up to 2.8e-3 on near-duplicate neurons (docs/method.md,
        "Mixed precision").
    groups : int >= 2, optional
        Keep a Gram per group of samples for jackknife error bars (docs/method.md, "Error
        bars"): each :meth:`update` (one batch) goes to the next group in turn (round-robin),
        and :meth:`leave_one_out` gives the K Grams of all samples but one group. Memory is
        K + 1 times the Gram's (the total and one per group); the Gram pass costs the same.
        Every measure of a grouped Gram then comes with its standard error
        (:class:`nsm.Estimate`). Default None: no groups, no error bars.

    Examples
    --------
    >>> import numpy as np, nsm
    >>> rng = np.random.default_rng(0)
    >>> X, Y = rng.random((1000, 8)), rng.random((1000, 6))
    >>> g = nsm.Gram(8, 6)
    >>> for start in range(0, 1000, 250):  # stream the samples in batches
    ...     g = g.update(X[start:start + 250], Y[start:start + 250])
    >>> g.n_samples, g.matrix.shape
    (1000, (14, 14))
    >>> bool(np.allclose(g.matrix, nsm.Gram.from_arrays(X, Y).matrix))
    True
    """

    def __init__(
        self, n_x: int, n_y: int, *, precision: Precision = DEFAULT_PRECISION, groups: int | None = None
    ) -> None:
        self._acc = _core.GramAccumulator(check_layer_size(n_x, "n_x"), check_layer_size(n_y, "n_y"))
        self._precision = check_precision(precision)
        # False for a Gram given without its column sums (from_matrix without column_sums=):
        # its zero sums are unknown ones, which the centred match refuses (nsm.gram.centering).
        self._sums_known = True
        k = check_groups(groups)
        # Per-group accumulators, fed by the dealer (whose lock keeps the total and its group
        # in step).
        self._groups = None if k is None else [_core.GramAccumulator(n_x, n_y) for _ in range(k)]
        self._dealer = GroupDealer(k)
        self._leave_out: tuple[int, list[Gram]] | None = None
        # The core locks itself; this lock only guards the cached read-only copy of the state,
        # which every change invalidates (the version check keeps a reader that raced an
        # update from caching what it read before).
        self._lock = threading.Lock()
        self._version = 0
        self._cache: tuple[np.ndarray, np.ndarray, int] | None = None

    @classmethod
    def from_arrays(
        cls,
        X: Any,
        Y: Any,
        *,
        num_threads: int | None = None,
        precision: Precision = DEFAULT_PRECISION,
        groups: int | None = None,
    ) -> Gram:
        """Accumulate the Gram of activations ``X`` (n_samples, n_x) and ``Y`` (n_samples, n_y).

        Numpy arrays or CPU torch tensors of any real dtype and any memory layout; float32 and
        float64 are read in place, one row block at a time. ``precision``: see :class:`Gram`.
        ``groups=K`` deals the rows into K contiguous blocks (block k holds rows
        ``k * n // K`` to ``(k + 1) * n // K``), one per jackknife group (memory K + 1 Grams;
        see :class:`Gram`); it needs at least K rows. Shuffle the rows first if their order
        follows something (a class, a time) that the groups should not.

        Examples
        --------
        >>> import numpy as np, nsm
        >>> X = np.eye(3, dtype=np.float32)
        >>> nsm.Gram.from_arrays(X, 2 * X).matrix[0]
        array([1., 0., 0., 2., 0., 0.])
        """
        X, Y = check_batch(X, Y)
        gram = cls(X.shape[1], Y.shape[1], precision=precision, groups=groups)
        threads = check_threads(num_threads)
        if gram._groups is None:
            gram._add(X, Y, threads)
            return gram
        k, d = len(gram._groups), X.shape[0]
        if d < k:
            raise ValueError(
                f"groups={k} needs at least {k} samples (one per group), but X and Y have {d}: "
                "pass fewer groups"
            )
        for i in range(k):
            rows = slice(i * d // k, (i + 1) * d // k)
            gram._add(X[rows], Y[rows], threads)
        return gram

    @classmethod
    def from_matrix(
        cls,
        matrix: Any,
        n_x: int,
        n_samples: int,
        column_sums: Any = None,
    ) -> Gram:
        """Wrap a Gram matrix computed elsewhere (for example summed across machines).

        Parameters
        ----------
        matrix : array of shape (n, n)
            Symmetric ``[X Y]ᵀ[X Y]``; only its lower triangle is read. A matrix that cannot
            be a Gram (a cosine above 1 or a negative eigenvalue beyond rounding) raises
            ValueError.
        n_x : int
            The first ``n_x`` neurons are layer X's.
        n_samples : int
            Number of samples it sums over, an int (sets the rank cutoff: docs/method.md, "Numerics").
        column_sums : array of shape (n,), optional
            Column sums of ``[X Y]``; zeros if not given.

        Examples
        --------
        >>> import numpy as np, nsm
        >>> A = np.random.default_rng(1).random((100, 5))
        >>> g = nsm.Gram.from_matrix(A.T @ A, n_x=2, n_samples=100)
        >>> g.n_x, g.n_y
        (2, 3)
        """
        lower = check_gram_matrix(matrix)
        n_x = check_layer_size(n_x, "n_x")
        if n_x >= lower.shape[0]:
            raise ValueError(f"n_x must be less than the matrix size {lower.shape[0]}, got {n_x}")
        n_samples = check_count(n_samples, "n_samples")
        sums = check_column_sums(column_sums, np.diag(lower), n_samples)
        gram = cls(n_x, lower.shape[0] - n_x)
        gram._acc.assign(lower, sums, n_samples)
        gram._sums_known = column_sums is not None
        return gram

    @classmethod
    def from_parts(cls, parts: GramParts, checked: bool = True) -> Gram:
        """The Gram of :meth:`parts` (or of parts made elsewhere: summed across processes,
        assembled from a grid's blocks, read from a file).

        ``checked=True`` checks everything as :meth:`from_matrix` does (a matrix that cannot be
        a Gram, column sums beyond Cauchy-Schwarz, a precision that is not one, groups that do
        not add up to the total raise ValueError). ``checked=False`` trusts parts that nsm made
        (a block of a Gram is a Gram): no checks, which cost an eigendecomposition per matrix,
        and the arrays are taken as they are (marked read-only, not copied), so the caller must
        not change them afterwards.

        Examples
        --------
        >>> import numpy as np, nsm
        >>> g = nsm.Gram.from_arrays(np.ones((6, 2)), np.ones((6, 1)), groups=3)
        >>> h = nsm.Gram.from_parts(g.parts())
        >>> h.groups, h.n_samples, bool(np.array_equal(h.matrix, g.matrix))
        (3, 6, True)
        """
        if not isinstance(parts, GramParts):
            raise TypeError(f"parts must be a GramParts (from Gram.parts()), got {type(parts).__name__}")
        precision = check_precision(parts.precision)
        if checked:
            gram = cls.from_matrix(
                parts.matrix, parts.n_x, parts.n_samples, parts.column_sums if parts.sums_known else None
            )
        else:
            matrix = np.asarray(parts.matrix, dtype=np.float64)
            sums = np.asarray(parts.column_sums, dtype=np.float64)
            gram = cls(parts.n_x, matrix.shape[0] - parts.n_x)
            gram._acc.assign(matrix, sums, int(parts.n_samples))
            gram._sums_known = bool(parts.sums_known)
            read_only(matrix, sums)
            gram._cache = (matrix, sums, int(parts.n_samples))
        gram._precision = precision
        if parts.groups is not None:
            gram._set_groups(parts.groups, int(parts.dealt), checked)
        return gram

    def parts(self, groups: bool = True) -> GramParts:
        """Everything this Gram holds, read at one moment between whole updates (read-only
        arrays): the one record the stages pass between them. ``groups=False`` leaves the
        jackknife groups out (``parts().groups`` is then None), which costs nothing.

        Examples
        --------
        >>> import numpy as np, nsm
        >>> p = nsm.Gram.from_arrays(np.ones((4, 2)), np.zeros((4, 1)), groups=2).parts()
        >>> p.n_samples, p.column_sums.tolist(), [g.n_samples for g in p.groups], p.dealt
        (4, [4.0, 4.0, 0.0], [2, 2], 2)
        """
        group_parts: tuple[GroupPart, ...] | None = None
        dealt = 0
        if groups and self._groups is not None:
            with self._dealer.lock:
                states = [g.state() for g in self._groups]
                matrix, sums, n_samples = self._acc.state()
                dealt = self._dealer.dealt
            for m, s, _ in states:
                read_only(m, s)
            group_parts = tuple(GroupPart(m, s, int(c)) for m, s, c in states)
            read_only(matrix, sums)
            n_samples = int(n_samples)
        else:
            matrix, sums, n_samples = self._state()
        return GramParts(
            matrix=matrix,
            column_sums=sums,
            n_samples=n_samples,
            n_x=self.n_x,
            precision=self._precision,
            sums_known=self._sums_known,
            groups=group_parts,
            dealt=dealt,
        )

    def update(
        self, X: Any, Y: Any, *, num_threads: int | None = None, precision: Precision | None = None
    ) -> Gram:
        """Add a batch of samples: ``X`` (batch, n_x) and ``Y`` (batch, n_y). Returns self.

        ``precision`` (see :class:`Gram`) applies to this batch; None uses the Gram's own.
        With ``groups``, the whole batch goes to the next group in turn.

        If the batch holds NaN or Inf, ValueError is raised and the Gram is left unchanged.

        Examples
        --------
        >>> import numpy as np, nsm
        >>> g = nsm.Gram(2, 1).update(np.ones((4, 2)), np.ones((4, 1)))
        >>> g.n_samples
        4
        """
        X, Y = check_batch(X, Y, self.n_x, self.n_y)
        self._add(
            X,
            Y,
            check_threads(num_threads),
            self._precision if precision is None else check_precision(precision),
        )
        return self

    def update_views(
        self, X: np.ndarray, Y: np.ndarray, *, num_threads: int = 1, precision: Precision | None = None
    ) -> Gram:
        """Add a batch that the core reads as it is: float32 or float64 arrays, 2-D (batch,
        neurons) or 3-D (N, C, P) channels-first (N * P samples of C neurons, as nsm.torch reads
        convolutional outputs without a copy). For accumulators that checked their input
        already: only the core's own checks run (shapes, NaN/Inf, overflow). With groups, the
        batch goes to the next group in turn. Returns self.

        Examples
        --------
        >>> import numpy as np, nsm
        >>> conv = np.ones((2, 3, 5), dtype=np.float32)  # 2 inputs, 3 channels, 5 positions
        >>> nsm.Gram(3, 3).update_views(conv, conv).n_samples
        10
        """
        precision = self._precision if precision is None else check_precision(precision)
        if self._groups is None:
            self._changed(self._acc.update, X, Y, num_threads, precision)
            return self
        staged = _core.GramAccumulator(self.n_x, self.n_y)
        staged.update(X, Y, num_threads, precision)
        self._changed(self._merge_batch, staged)
        return self

    @property
    def precision(self) -> Precision:
        """How this Gram's float32 batches are multiplied by default ("mixed" or "float64")."""
        return self._precision

    @property
    def rounding_floor(self) -> float:
        """The relative size below which a direction of this Gram is rounding, not signal: the
        engine's rank cutoff ``eps_machine * max(n_samples, n)``, or the mixed pass's rounding
        for a mixed Gram (:func:`nsm.gram.rank_cutoff`). The standard measures cut ranks and
        the centred match finds constant neurons at this value.

        Examples
        --------
        >>> import numpy as np, nsm
        >>> g = nsm.Gram.from_arrays(np.ones((1000, 2)), np.ones((1000, 1)))
        >>> bool(np.isclose(g.rounding_floor, 1000 * np.finfo(float).eps))
        True
        """
        return rank_cutoff(self.n_samples, self.n, self._precision)

    @property
    def sums_known(self) -> bool:
        """False for a Gram given without its column sums (:meth:`from_matrix` without
        ``column_sums=``, or merged with one): the centred match needs them and refuses it."""
        return self._sums_known

    def _add(self, X: np.ndarray, Y: np.ndarray, threads: int, precision: Precision | None = None) -> None:
        precision = self._precision if precision is None else precision
        if read_in_place(X) and read_in_place(Y) and self._groups is None:
            self.update_views(X, Y, num_threads=threads, precision=precision)
            return
        # Arrays the core does not read in place are converted one block of rows at a time
        # into a staging Gram, merged at the end so that a bad block leaves this one unchanged.
        rows = _core.GramAccumulator.block_rows(self.n)
        staged = _core.GramAccumulator(self.n_x, self.n_y)
        for start in range(0, X.shape[0], rows):
            stop = start + rows
            staged.update(as_core_dtype(X[start:stop]), as_core_dtype(Y[start:stop]), threads, precision)
        self._changed(self._merge_batch, staged)

    def _merge_batch(self, staged: Any) -> None:
        """Add one batch's accumulator to the total and, with groups, to the next group."""
        if self._groups is None:
            self._acc.merge(staged)
            return
        with self._dealer.lock:
            k = self._dealer.deal(int(staged.n_samples))
            if k is not None:
                self._groups[k].merge(staged)
            self._acc.merge(staged)

    def _changed(self, change: Any, *args: Any) -> None:
        try:
            change(*args)
        finally:
            with self._lock:
                self._version += 1
                self._cache = None

    def _state(self) -> tuple[np.ndarray, np.ndarray, int]:
        """(matrix, column sums, n_samples) from one moment between whole updates; read-only."""
        with self._lock:
            if self._cache is not None:
                return self._cache
            version = self._version
        matrix, sums, n_samples = self._acc.state()
        read_only(matrix, sums)
        state = (matrix, sums, int(n_samples))
        with self._lock:
            if self._version == version:
                self._cache = state
        return state

    @property
    def n_x(self) -> int:
        """Neurons of layer X."""
        return int(self._acc.n_x)

    @property
    def n_y(self) -> int:
        """Neurons of layer Y."""
        return int(self._acc.n_y)

    @property
    def n(self) -> int:
        """Neurons of both layers, ``n_x + n_y``."""
        return self.n_x + self.n_y

    @property
    def n_samples(self) -> int:
        """Samples accumulated so far."""
        return self._state()[2]

    @property
    def matrix(self) -> np.ndarray:
        """The symmetric (n, n) float64 Gram matrix (read-only)."""
        return self._state()[0]

    @property
    def column_sums(self) -> np.ndarray:
        """Sum over samples of each neuron's activation, shape (n,) (a copy)."""
        return self._state()[1].copy()

    @property
    def groups(self) -> int | None:
        """The number of jackknife groups, or None when the Gram keeps none."""
        return None if self._groups is None else len(self._groups)

    @property
    def group_sizes(self) -> np.ndarray:
        """Samples in each jackknife group, shape (K,) int64 (a ValueError without groups)."""
        groups = self._require_groups("group_sizes")
        with self._dealer.lock:
            return np.array([g.n_samples for g in groups], dtype=np.int64)

    def _require_groups(self, what: str) -> list[Any]:
        if self._groups is None:
            raise ValueError(
                f"{what} needs jackknife groups: build the Gram with groups=K, for example "
                "nsm.Gram.from_arrays(X, Y, groups=20) or nsm.Gram(n_x, n_y, groups=20)"
            )
        return self._groups

    def leave_one_out(self) -> list[Gram]:
        """The K Grams of all samples but one group: ``[total - group_k for k in range(K)]``.

        Each is an ordinary Gram (no groups) with this one's precision; they are computed
        once per state of this Gram and then kept (K more Grams of memory). Every group must
        hold samples: with fewer batches (or rows) than groups, a ValueError says so.

        Examples
        --------
        >>> import numpy as np, nsm
        >>> X, Y = np.arange(12.0).reshape(6, 2), np.ones((6, 1))
        >>> g = nsm.Gram.from_arrays(X, Y, groups=3)  # rows 0-1, 2-3, 4-5
        >>> [h.n_samples for h in g.leave_one_out()]
        [4, 4, 4]
        >>> bool(np.allclose(g.leave_one_out()[0].matrix, nsm.Gram.from_arrays(X[2:], Y[2:]).matrix))
        True
        """
        groups = self._require_groups("leave_one_out")
        with self._dealer.lock:
            with self._lock:
                version = self._version
            if self._leave_out is not None and self._leave_out[0] == version:
                return list(self._leave_out[1])
            parts = [g.state() for g in groups]
            matrix, sums, n_samples = self._acc.state()
            dealt = self._dealer.dealt
        empty = [k for k, (_, _, count) in enumerate(parts) if count == 0]
        if empty:
            raise ValueError(
                f"groups={len(groups)} but group(s) {empty} got no samples ({dealt} batches with "
                "samples were dealt, one batch per group in turn): pass groups= at most the "
                "number of batches (or rows), or stream more batches"
            )
        # Each difference is a fresh symmetric array, taken as the Gram's state (no tril copy).
        out = [
            Gram.from_parts(
                GramParts(matrix - m, sums - s, int(n_samples - count), self.n_x, self._precision),
                checked=False,
            )
            for m, s, count in parts
        ]
        with self._lock:
            if self._version == version:
                self._leave_out = (version, out)
        return list(out)

    def merge(self, other: Gram) -> Gram:
        """A new Gram over the samples of both (they must be disjoint sets of samples).

        Grams with jackknife groups merge group by group (group k of the result holds the
        samples of group k of both), so both need the same ``groups``; a Gram with groups
        does not merge with one without (its samples would belong to no group).

        Examples
        --------
        >>> import numpy as np, nsm
        >>> X, Y = np.ones((6, 2)), np.ones((6, 3))
        >>> a = nsm.Gram.from_arrays(X[:4], Y[:4])
        >>> b = nsm.Gram.from_arrays(X[4:], Y[4:])
        >>> (a + b).n_samples
        6
        """
        if not isinstance(other, Gram):
            raise TypeError(f"can only merge a Gram with a Gram, got {type(other).__name__}")
        if (other.n_x, other.n_y) != (self.n_x, self.n_y):
            raise ValueError(
                f"cannot merge a Gram of layers ({self.n_x}, {self.n_y}) with one of "
                f"({other.n_x}, {other.n_y})"
            )
        if self.groups != other.groups:
            raise ValueError(
                f"cannot merge a Gram with groups={self.groups} and one with groups={other.groups}: "
                "jackknife groups merge group by group, so build both with the same groups="
            )
        if self.n_samples and other.n_samples and self.digest == other.digest:
            raise ValueError(
                f"cannot merge two Grams of the same samples (digest {self.digest[:12]}...): the same "
                "shard would be counted twice; merge each shard once"
            )
        out = Gram(self.n_x, self.n_y, precision=self._precision, groups=self.groups)
        for g in (self, other):
            with g._dealer.lock:
                out._acc.merge(g._acc)
                if g._groups is not None and out._groups is not None:
                    for mine, theirs in zip(out._groups, g._groups):
                        mine.merge(theirs)
                    out._dealer.dealt += g._dealer.dealt
        out._sums_known = self._sums_known and other._sums_known
        return out

    @property
    def digest(self) -> str:
        """A SHA-256 digest of what this Gram holds (its matrix, column sums, sample count and
        layer split): the same samples accumulated the same way give the same digest, through
        save and load too, so :meth:`merge` refuses to count a shard twice.

        Examples
        --------
        >>> import numpy as np, nsm
        >>> g = nsm.Gram.from_arrays(np.ones((5, 2)), np.ones((5, 1)))
        >>> g.digest == nsm.Gram.from_arrays(np.ones((5, 2)), np.ones((5, 1))).digest
        True
        """
        matrix, sums, n_samples = self._state()
        h = hashlib.sha256()
        h.update(np.array([self.n_x, n_samples], dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(matrix).tobytes())
        h.update(np.ascontiguousarray(sums).tobytes())
        return h.hexdigest()

    def __add__(self, other: Gram) -> Gram:
        if not isinstance(other, Gram):
            return NotImplemented
        return self.merge(other)

    def save(self, path: Any) -> None:
        """Write the Gram to a ``.npz`` file (matrix, column sums, n_x, n_samples), for example
        to merge accumulators computed on several machines. With jackknife groups, every
        group's matrix, sums and count too (K + 1 Grams), which :meth:`load` restores.

        Examples
        --------
        >>> import numpy as np, nsm, tempfile, os
        >>> g = nsm.Gram.from_arrays(np.ones((5, 2)), np.ones((5, 1)))
        >>> path = os.path.join(tempfile.mkdtemp(), "gram.npz")
        >>> g.save(path)
        >>> nsm.Gram.load(path).n_samples
        5
        """
        npz.save(path, self.parts())

    @classmethod
    def load(cls, path: Any) -> Gram:
        """Read a Gram written by :meth:`save` (see its example). A file that is not one, or
        whose fields are malformed (a count that is not an integer, a complex or impossible
        matrix), raises ValueError naming what is wrong."""
        parts = npz.load(path)
        try:
            return cls.from_parts(parts)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc

    def _set_groups(self, parts: tuple[GroupPart, ...], dealt: int, checked: bool) -> None:
        """Give this Gram (just made, without groups) its groups' parts; checked, they must add
        up to it (a damaged or mixed file otherwise)."""
        k = check_groups(len(parts))
        n = self.n
        total = np.zeros((n, n))
        total_count = 0
        groups = []
        for i, (m, s, count) in enumerate(parts):
            m, s = np.asarray(m, dtype=np.float64), np.asarray(s, dtype=np.float64)
            acc = _core.GramAccumulator(self.n_x, self.n_y)
            if not checked:
                acc.assign(m, s, int(count))
                groups.append(acc)
                continue
            if m.shape != (n, n) or s.shape != (n,):
                raise ValueError(f"groups: group {i} has a matrix of shape {m.shape}, expected {(n, n)}")
            lower = check_gram_matrix(m, f"group {i}'s matrix")
            acc.assign(lower, check_column_sums(s, np.diag(lower), count), check_count(count, "count"))
            groups.append(acc)
            total += lower + np.tril(lower, -1).T
            total_count += int(count)
        if checked:
            matrix, _, n_samples = self._state()
            scale = max(float(np.abs(np.diag(matrix)).max(initial=0.0)), np.finfo(np.float64).tiny)
            if total_count != n_samples or not np.allclose(total, matrix, rtol=1e-9, atol=1e-9 * scale):
                raise ValueError(f"the {k} groups do not add up to the Gram (damaged or mixed files)")
        self._groups = groups
        self._dealer = GroupDealer(k, dealt)

    def __repr__(self) -> str:
        groups = "" if self._groups is None else f", groups={len(self._groups)}"
        return f"Gram(n_x={self.n_x}, n_y={self.n_y}, n_samples={self.n_samples}{groups})"
