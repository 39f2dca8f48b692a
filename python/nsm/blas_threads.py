"""BLAS on one thread while nsm runs many small decompositions side by side.

NumPy's BLAS (OpenBLAS in its wheels) splits even a 512 x 512 SVD across its threads; on a busy
machine those threads wait on each other, and such an SVD took six times as long on two threads
as on one (README, "Every site against every site"). Where nsm decomposes many small blocks (the
pairs of a grid), it runs them on nsm's own threads, each with a one-threaded BLAS.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

__all__ = ["one_blas_thread"]


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Within the block, BLAS and LAPACK calls run on one thread each (the setting is the
    process's: every thread sees it); the previous setting comes back afterwards.

    Examples
    --------
    >>> import numpy as np
    >>> from nsm.blas_threads import one_blas_thread
    >>> with one_blas_thread():
    ...     s = np.linalg.svd(np.eye(3), compute_uv=False)
    >>> s.tolist()
    [1.0, 1.0, 1.0]
    """
    with threadpool_limits(limits=1, user_api="blas"):
        yield
