"""The Gram matrix of two layers' activations, accumulated in float64 over sample batches."""

from __future__ import annotations

import numbers
from typing import Any, Literal

import numpy as np

from . import _core
from .arrays import CORE_DTYPES, as_activations, as_core_dtype, check_threads

__all__ = ["Gram"]

Precision = Literal["float64", "mixed"]
PRECISIONS = ("float64", "mixed")
# The default of every Gram pass; bench/bench_gram_precision.py measured it (README: "Precision").
DEFAULT_PRECISION: Precision = "mixed"


def check_precision(precision: Any) -> Precision:
    """Validate a ``precision`` argument ("float64" or "mixed")."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"precision must be 'float64' or 'mixed', got {precision!r}")
    return precision  # type: ignore[return-value]


def _check_layer_size(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1 (a layer needs a neuron), got {value}")
    return int(value)


class Gram:
    """The Gram matrix ``G = AᵀA`` of ``A = [X Y]`` (float64) and the column sums of ``A``.

    Everything nsm computes about two layers depends on the activations only through ``G``
    (SPEC section 4), so activations can be streamed batch by batch and never stored. Neurons
    ``0 .. n_x-1`` of ``G`` are layer X's, ``n_x .. n_x+n_y-1`` layer Y's.

    Parameters
    ----------
    n_x, n_y : int
        Number of neurons of each layer.
    precision : {"mixed", "float64"}
        How :meth:`update` multiplies float32 activations: ``"mixed"`` (the default) forms
        float32 products over blocks of 2,048 rows and adds each block into the float64 Gram;
        ``"float64"`` converts every value to float64 first. Float64 input always takes the
        float64 pass. Mixed keeps every critical eps within 1e-5 of the float64 pass on
        realistic layers and within 1e-3 on hard ones (near-duplicate neurons, scales from 1e-3
        to 1e3, nearly dead neurons, 10^6 samples); see the README's "Precision" table.

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

    def __init__(self, n_x: int, n_y: int, *, precision: Precision = DEFAULT_PRECISION) -> None:
        self._acc = _core.GramAccumulator(_check_layer_size(n_x, "n_x"), _check_layer_size(n_y, "n_y"))
        self._matrix: np.ndarray | None = None
        self._precision = check_precision(precision)

    @classmethod
    def from_arrays(cls, X: Any, Y: Any, *, num_threads: int | None = None,
                    precision: Precision = DEFAULT_PRECISION) -> Gram:
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
        X = as_activations(X, "X")
        Y = as_activations(Y, "Y")
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
            Symmetric ``[X Y]ᵀ[X Y]``; only its lower triangle is read.
        n_x : int
            The first ``n_x`` neurons are layer X's.
        n_samples : int
            Number of samples it sums over (sets the rank tolerance, SPEC section 4).
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
        m = np.asarray(matrix, dtype=np.float64)
        if m.ndim != 2 or m.shape[0] != m.shape[1]:
            raise ValueError(f"matrix must be square, got shape {m.shape}")
        n_x = _check_layer_size(n_x, "n_x")
        if n_x >= m.shape[0]:
            raise ValueError(f"n_x must be less than the matrix size {m.shape[0]}, got {n_x}")
        if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) or n_samples < 0:
            raise ValueError(f"n_samples must be an int >= 0, got {n_samples!r}")
        if not np.all(np.isfinite(m)):
            raise ValueError("matrix contains NaN or Inf")
        if np.any(np.diag(m) < 0):
            bad = int(np.flatnonzero(np.diag(m) < 0)[0])
            raise ValueError(f"matrix has a negative diagonal entry at {bad}: a Gram matrix's diagonal "
                             "holds squared norms")
        sums = np.zeros(m.shape[0]) if column_sums is None else np.asarray(column_sums, dtype=np.float64)
        if sums.shape != (m.shape[0],):
            raise ValueError(f"column_sums must have shape ({m.shape[0]},), got {sums.shape}")
        gram = cls(n_x, m.shape[0] - n_x)
        gram._acc.assign(np.tril(m), sums, int(n_samples))
        return gram

    def update(self, X: Any, Y: Any, *, num_threads: int | None = None,
               precision: Precision | None = None) -> Gram:
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
        X = as_activations(X, "X")
        Y = as_activations(Y, "Y")
        if X.shape[1] != self.n_x:
            raise ValueError(f"X has {X.shape[1]} neurons but this Gram's layer X has {self.n_x}")
        if Y.shape[1] != self.n_y:
            raise ValueError(f"Y has {Y.shape[1]} neurons but this Gram's layer Y has {self.n_y}")
        self._add(X, Y, check_threads(num_threads),
                  self._precision if precision is None else check_precision(precision))
        return self

    @property
    def precision(self) -> Precision:
        """How this Gram's float32 batches are multiplied by default ("mixed" or "float64")."""
        return self._precision

    def _add(self, X: np.ndarray, Y: np.ndarray, threads: int, precision: Precision | None = None) -> None:
        precision = self._precision if precision is None else precision
        if X.shape[0] != Y.shape[0]:
            raise ValueError(f"X has {X.shape[0]} samples but Y has {Y.shape[0]}")
        self._matrix = None
        if X.dtype in CORE_DTYPES and Y.dtype in CORE_DTYPES:
            self._acc.update(X, Y, threads, False, precision)
            return
        # Dtypes the core does not read are converted one block of rows at a time. Check all
        # blocks for NaN/Inf first so that a bad batch leaves the Gram unchanged.
        rows = _core.GramAccumulator.block_rows(self.n)
        staged = _core.GramAccumulator(self.n_x, self.n_y)
        for start in range(0, X.shape[0], rows):
            stop = start + rows
            staged.update(as_core_dtype(X[start:stop]), as_core_dtype(Y[start:stop]), threads, False,
                          precision)
        self._acc.merge(staged)

    def _add_views(self, X: np.ndarray, Y: np.ndarray, threads: int) -> None:
        """Add float32/float64 arrays the core reads as they are, without the checks of
        ``update``; 3-D (N, C, P) arrays count as N * P samples (nsm.torch's conv outputs)."""
        self._matrix = None
        self._acc.update(X, Y, threads, False, self._precision)

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
        return int(self._acc.n_samples)

    @property
    def matrix(self) -> np.ndarray:
        """The symmetric (n, n) float64 Gram matrix (read-only)."""
        if self._matrix is None:
            m = self._acc.matrix()
            m.setflags(write=False)
            self._matrix = m
        return self._matrix

    @property
    def column_sums(self) -> np.ndarray:
        """Sum over samples of each neuron's activation, shape (n,) (a copy)."""
        return self._acc.column_sums()

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
        np.savez(path, matrix=self.matrix, column_sums=self.column_sums,
                 n_x=np.int64(self.n_x), n_samples=np.int64(self.n_samples))

    @classmethod
    def load(cls, path: Any) -> Gram:
        """Read a Gram written by :meth:`save` (see its example)."""
        with np.load(path, allow_pickle=False) as f:
            missing = {"matrix", "column_sums", "n_x", "n_samples"} - set(f.files)
            if missing:
                raise ValueError(f"{path} is not a saved nsm Gram (missing {', '.join(sorted(missing))})")
            return cls.from_matrix(f["matrix"], int(f["n_x"]), int(f["n_samples"]),
                                   column_sums=f["column_sums"])

    def __repr__(self) -> str:
        return f"Gram(n_x={self.n_x}, n_y={self.n_y}, n_samples={self.n_samples})"
