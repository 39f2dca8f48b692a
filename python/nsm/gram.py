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

    def __init__(self, n_x: int, n_y: int, *, precision: Precision = DEFAULT_PRECISION) -> None:
        self._acc = _core.GramAccumulator(check_layer_size(n_x, "n_x"), check_layer_size(n_y, "n_y"))
        self._precision = check_precision(precision)
        # The core locks itself; this lock only guards the cached read-only copy of the state,
        # which every change invalidates (the version check keeps a reader that raced an
        # update from caching what it read before).
        self._lock = threading.Lock()
        self._version = 0
        self._cache: tuple[np.ndarray, np.ndarray, int] | None = None

    @classmethod
    def from_arrays(
        cls, X: Any, Y: Any, *, num_threads: int | None = None, precision: Precision = DEFAULT_PRECISION
    ) -> Gram:
        """Accumulate the Gram of activations ``X`` (n_samples, n_x) and ``Y`` (n_samples, n_y).

        Numpy arrays or CPU torch tensors of any real dtype and any memory layout; float32 and
        float64 are read in place, one row block at a time. ``precision``: see :class:`Gram`.

        Examples
        --------
        >>> import numpy as np, nsm
        >>> X = np.eye(3, dtype=np.float32)
        >>> nsm.Gram.from_arrays(X, 2 * X).matrix[0]
        array([1., 0., 0., 2., 0., 0.])
        """
        X, Y = check_batch(X, Y)
        gram = cls(X.shape[1], Y.shape[1], precision=precision)
        gram._add(X, Y, check_threads(num_threads))
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

    def update(
        self, X: Any, Y: Any, *, num_threads: int | None = None, precision: Precision | None = None
    ) -> Gram:
        """Add a batch of samples: ``X`` (batch, n_x) and ``Y`` (batch, n_y). Returns self.

        ``precision`` (see :class:`Gram`) applies to this batch; None uses the Gram's own.

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
        if read_in_place(X) and read_in_place(Y):
            self._add_views(X, Y, threads, precision=precision)
            return
        # Arrays the core does not read in place are converted one block of rows at a time
        # into a staging Gram, merged at the end so that a bad block leaves this one unchanged.
        rows = _core.GramAccumulator.block_rows(self.n)
        staged = _core.GramAccumulator(self.n_x, self.n_y)
        for start in range(0, X.shape[0], rows):
            stop = start + rows
            staged.update(
                as_core_dtype(X[start:stop]), as_core_dtype(Y[start:stop]), threads, False, precision
            )
        self._changed(self._acc.merge, staged)

    def _add_views(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        threads: int,
        cross_only: bool = False,
        precision: Precision | None = None,
    ) -> None:
        """Add float32/float64 arrays the core reads as they are, without the checks of
        ``update``; 3-D (N, C, P) arrays count as N * P samples (nsm.torch's conv outputs)."""
        self._changed(
            self._acc.update, X, Y, threads, cross_only, self._precision if precision is None else precision
        )

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

    def merge(self, other: Gram) -> Gram:
        """A new Gram over the samples of both (they must be disjoint sets of samples).

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
        out = Gram(self.n_x, self.n_y, precision=self._precision)
        out._acc.merge(self._acc)
        out._acc.merge(other._acc)
        out._sums_known = self._sums_known and other._sums_known
        return out

    def __add__(self, other: Gram) -> Gram:
        if not isinstance(other, Gram):
            return NotImplemented
        return self.merge(other)

    def save(self, path: Any) -> None:
        """Write the Gram to a ``.npz`` file (matrix, column sums, n_x, n_samples), for example
        to merge accumulators computed on several machines.

        Examples
        --------
        >>> import numpy as np, nsm, tempfile, os
        >>> g = nsm.Gram.from_arrays(np.ones((5, 2)), np.ones((5, 1)))
        >>> path = os.path.join(tempfile.mkdtemp(), "gram.npz")
        >>> g.save(path)
        >>> nsm.Gram.load(path).n_samples
        5
        """
        matrix, sums, n_samples = self._state()
        np.savez(path, matrix=matrix, column_sums=sums, n_x=np.int64(self.n_x), n_samples=np.int64(n_samples))

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
                try:
                    values = {k: f[k] for k in fields}
                except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
                    raise ValueError(f"{path} is a damaged nsm Gram: {exc}") from exc
        for name in ("n_x", "n_samples"):
            v = values[name]
            if v.ndim != 0 or v.dtype.kind not in "iu":
                raise ValueError(f"{path}: saved {name} must be an integer, got {v!r}")
        return cls.from_matrix(
            values["matrix"], int(values["n_x"]), int(values["n_samples"]), column_sums=values["column_sums"]
        )

    def __repr__(self) -> str:
        return f"Gram(n_x={self.n_x}, n_y={self.n_y}, n_samples={self.n_samples})"
