"""The Gram matrix of two layers' activations, accumulated in float64 over sample batches."""

from __future__ import annotations

import threading
import zipfile
from typing import Any

import numpy as np

from . import _core
from .arrays import as_core_dtype, read_in_place
from .validation import (
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

    # False for a Gram from from_matrix without column_sums (its zero sums are unknown ones,
    # which the centred match refuses: nsm/centering.py).
    _sums_known: bool = True

    def __init__(
        self, n_x: int, n_y: int, *, precision: Precision = DEFAULT_PRECISION, groups: int | None = None
    ) -> None:
        self._acc = _core.GramAccumulator(check_layer_size(n_x, "n_x"), check_layer_size(n_y, "n_y"))
        self._precision = check_precision(precision)
        k = check_groups(groups)
        # Per-group accumulators and the number of batches dealt so far (the next batch goes
        # to group ``_dealt % K``); ``_group_lock`` keeps the total and its group in step.
        self._groups = None if k is None else [_core.GramAccumulator(n_x, n_y) for _ in range(k)]
        self._dealt = 0
        self._group_lock = threading.Lock()
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
    def _from_block(
        cls, matrix: np.ndarray, n_x: int, n_samples: int, column_sums: np.ndarray, precision: Precision
    ) -> Gram:
        """A Gram of neurons cut out of a Gram nsm accumulated (``matrix``: the symmetric block,
        a fresh float64 array this Gram takes; ``column_sums`` likewise): no checks, since a block
        of a Gram is a Gram, and the block itself kept as the state ``matrix`` reads."""
        gram = cls(n_x, matrix.shape[0] - n_x, precision=precision)
        gram._acc.assign(matrix, column_sums, n_samples)
        matrix.setflags(write=False)
        column_sums.setflags(write=False)
        gram._cache = (matrix, column_sums, int(n_samples))
        return gram

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

    @property
    def precision(self) -> Precision:
        """How this Gram's float32 batches are multiplied by default ("mixed" or "float64")."""
        return self._precision

    def _add(self, X: np.ndarray, Y: np.ndarray, threads: int, precision: Precision | None = None) -> None:
        precision = self._precision if precision is None else precision
        if read_in_place(X) and read_in_place(Y) and self._groups is None:
            self._add_views(X, Y, threads, precision=precision)
            return
        # Arrays the core does not read in place are converted one block of rows at a time
        # into a staging Gram, merged at the end so that a bad block leaves this one unchanged.
        rows = _core.GramAccumulator.block_rows(self.n)
        staged = _core.GramAccumulator(self.n_x, self.n_y)
        for start in range(0, X.shape[0], rows):
            stop = start + rows
            staged.update(as_core_dtype(X[start:stop]), as_core_dtype(Y[start:stop]), threads, precision)
        self._changed(self._merge_batch, staged)

    def _add_views(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        threads: int,
        precision: Precision | None = None,
    ) -> None:
        """Add float32/float64 arrays the core reads as they are, without the checks of
        ``update``; 3-D (N, C, P) arrays count as N * P samples (nsm.torch's conv outputs).
        With groups, the batch goes to the next group in turn."""
        precision = self._precision if precision is None else precision
        if self._groups is None:
            self._changed(self._acc.update, X, Y, threads, precision)
            return
        staged = _core.GramAccumulator(self.n_x, self.n_y)
        staged.update(X, Y, threads, precision)
        self._changed(self._merge_batch, staged)

    def _merge_batch(self, staged: Any) -> None:
        """Add one batch's accumulator to the total and, with groups, to the next group."""
        if self._groups is None:
            self._acc.merge(staged)
            return
        with self._group_lock:
            if staged.n_samples:  # a batch without samples is no unit of the jackknife
                self._groups[self._dealt % len(self._groups)].merge(staged)
                self._dealt += 1
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
        matrix.setflags(write=False)
        sums.setflags(write=False)
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
        with self._group_lock:
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
        with self._group_lock:
            with self._lock:
                version = self._version
            if self._leave_out is not None and self._leave_out[0] == version:
                return list(self._leave_out[1])
            parts = [g.state() for g in groups]
            matrix, sums, n_samples = self._acc.state()
            dealt = self._dealt
        empty = [k for k, (_, _, count) in enumerate(parts) if count == 0]
        if empty:
            raise ValueError(
                f"groups={len(groups)} but group(s) {empty} got no samples ({dealt} batches with "
                "samples were dealt, one batch per group in turn): pass groups= at most the "
                "number of batches (or rows), or stream more batches"
            )
        out = []
        for m, s, count in parts:
            g = Gram(self.n_x, self.n_y, precision=self._precision)
            g._acc.assign(np.tril(matrix - m), sums - s, int(n_samples - count))
            out.append(g)
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
        out = Gram(self.n_x, self.n_y, precision=self._precision, groups=self.groups)
        for g in (self, other):
            with g._group_lock:
                out._acc.merge(g._acc)
                if g._groups is not None and out._groups is not None:
                    for mine, theirs in zip(out._groups, g._groups):
                        mine.merge(theirs)
                    out._dealt += g._dealt
        out._sums_known = self._sums_known and other._sums_known
        return out

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
        np.savez(path, **self._fields())

    def _fields(self) -> dict[str, Any]:
        """The arrays that make this Gram again (:meth:`save`'s file, and the Grams saved beside
        a comparison): matrix, column sums, n_x, n_samples, whether the sums are known, the
        precision, and with groups every group's parts."""
        extra: dict[str, Any] = {}
        if self._groups is not None:
            with self._group_lock:
                parts = [g.state() for g in self._groups]
                matrix, sums, n_samples = self._acc.state()
                extra["group_dealt"] = np.int64(self._dealt)
            extra["group_matrices"] = np.stack([m for m, _, _ in parts])
            extra["group_sums"] = np.stack([s for _, s, _ in parts])
            extra["group_counts"] = np.array([c for _, _, c in parts], dtype=np.int64)
        else:
            matrix, sums, n_samples = self._state()
        return dict(
            matrix=matrix,
            column_sums=sums,
            n_x=np.int64(self.n_x),
            n_samples=np.int64(n_samples),
            sums_known=np.int64(self._sums_known),
            precision=np.array(self._precision),
            **extra,
        )

    @classmethod
    def load(cls, path: Any) -> Gram:
        """Read a Gram written by :meth:`save` (see its example). A file that is not one, or
        whose fields are malformed (a count that is not an integer, a complex or impossible
        matrix), raises ValueError naming what is wrong."""
        fields = ("matrix", "column_sums", "n_x", "n_samples")
        not_gram = f"{path} is not a saved nsm Gram (an .npz file written by Gram.save)"
        with open(path, "rb") as handle:
            try:
                archive = np.load(handle, allow_pickle=False)
            except (ValueError, EOFError, zipfile.BadZipFile) as exc:
                raise ValueError(f"{not_gram}: {exc}") from exc
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise ValueError(f"{not_gram}: it holds a single array")
            with archive as f:
                missing = set(fields) - set(f.files)
                if missing:
                    raise ValueError(f"{path} is not a saved nsm Gram (missing {', '.join(sorted(missing))})")
                grouped = ("group_matrices", "group_sums", "group_counts", "group_dealt")
                present = [k for k in grouped if k in f.files]
                if present and len(present) != len(grouped):
                    missing_groups = sorted(set(grouped) - set(present))
                    raise ValueError(f"{path} is a damaged nsm Gram (missing {', '.join(missing_groups)})")
                try:
                    optional = [k for k in ("sums_known", "precision") if k in f.files]
                    values = {k: f[k] for k in (*fields, *present, *optional)}
                except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
                    raise ValueError(f"{path} is a damaged nsm Gram: {exc}") from exc
        return cls._from_fields(values, str(path))

    @classmethod
    def _from_fields(cls, values: dict[str, Any], where: str) -> Gram:
        """The Gram of :meth:`_fields`' arrays (files written before ``sums_known`` and
        ``precision`` were saved: sums known, the default precision)."""
        grouped = "group_counts" in values
        for name in ("n_x", "n_samples", "sums_known", "group_dealt"):
            if name not in values:
                continue
            v = values[name]
            if v.ndim != 0 or v.dtype.kind not in "iu":
                raise ValueError(f"{where}: saved {name} must be an integer, got {v!r}")
        known = int(values["sums_known"]) != 0 if "sums_known" in values else True
        gram = cls.from_matrix(
            values["matrix"],
            int(values["n_x"]),
            int(values["n_samples"]),
            column_sums=values["column_sums"] if known else None,
        )
        if "precision" in values:
            p = values["precision"]
            if p.ndim != 0 or p.dtype.kind != "U":
                raise ValueError(f"{where}: saved precision must be a string, got {p!r}")
            gram._precision = check_precision(str(p))
        if not grouped:
            return gram
        counts = values["group_counts"]
        if counts.ndim != 1 or counts.dtype.kind not in "iu" or len(counts) < 2:
            raise ValueError(f"{where}: saved group_counts must be 2 or more integers, got {counts!r}")
        parts = [(values["group_matrices"][k], values["group_sums"][k], int(c)) for k, c in enumerate(counts)]
        return gram._with_groups(parts, int(values["group_dealt"]), where=where)

    def _group_parts(self) -> tuple[list[tuple[np.ndarray, np.ndarray, int]], int]:
        """Each group's (matrix, column sums, n_samples) and the batches dealt, read together."""
        groups = self._require_groups("_group_parts")
        with self._group_lock:
            return [(m, s, int(c)) for m, s, c in (g.state() for g in groups)], self._dealt

    def _with_groups(
        self, parts: list[tuple[Any, Any, int]], dealt: int, where: str = "groups", check: bool = True
    ) -> Gram:
        """This Gram (just made, without groups) given the groups' (matrix, sums, count); the
        groups must add up to it. Used by :meth:`load` and by nsm.torch. ``check=False`` for
        blocks cut out of the groups of a Gram nsm accumulated (a block of a Gram is a Gram, and
        the blocks add up): no checks, which cost an eigendecomposition per group."""
        k = check_groups(len(parts))
        n = self.n
        total = np.zeros((n, n))
        total_sums = np.zeros(n)
        total_count = 0
        groups = []
        for i, (m, s, count) in enumerate(parts):
            m, s = np.asarray(m, dtype=np.float64), np.asarray(s, dtype=np.float64)
            acc = _core.GramAccumulator(self.n_x, self.n_y)
            if not check:
                acc.assign(np.tril(m), s, int(count))
                groups.append(acc)
                continue
            if m.shape != (n, n) or s.shape != (n,):
                raise ValueError(f"{where}: group {i} has a matrix of shape {m.shape}, expected {(n, n)}")
            lower = check_gram_matrix(m, f"{where}: group {i}'s matrix")
            acc.assign(lower, check_column_sums(s, np.diag(lower), count), check_count(count, "count"))
            groups.append(acc)
            total += lower + np.tril(lower, -1).T
            total_sums += s
            total_count += int(count)
        if check:
            matrix, sums, n_samples = self._state()
            scale = max(float(np.abs(np.diag(matrix)).max(initial=0.0)), np.finfo(np.float64).tiny)
            if total_count != n_samples or not np.allclose(total, matrix, rtol=1e-9, atol=1e-9 * scale):
                raise ValueError(
                    f"{where}: the {k} groups do not add up to the Gram (damaged or mixed files)"
                )
        self._groups = groups
        self._dealt = dealt
        return self

    def __repr__(self) -> str:
        groups = "" if self._groups is None else f", groups={len(self._groups)}"
        return f"Gram(n_x={self.n_x}, n_y={self.n_y}, n_samples={self.n_samples}{groups})"
