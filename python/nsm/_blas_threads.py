"""BLAS on one thread while nsm runs many small decompositions side by side.

NumPy's BLAS (OpenBLAS in its wheels) splits even a 512 x 512 SVD across its threads; on a busy
machine those threads wait on each other, and such an SVD took six times as long on two threads
as on one (README, "Every site against every site"). Where nsm decomposes many small blocks (the
pairs of a grid), it runs them on nsm's own threads, each with a one-threaded BLAS.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

__all__ = ["one_blas_thread"]


_lock = threading.Lock()
_holders = 0  # blocks open now, in any thread
_limits: threadpool_limits | None = None  # what the first one set, undone by the last


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Within the block, BLAS and LAPACK calls run on one thread each. The setting is the
    process's: while any thread is inside such a block, every thread's BLAS calls run on one
    thread; the setting from before comes back when the last block closes, whatever the order
    in which threads leave. Where threadpoolctl sees no BLAS (a BLAS it does not know), nothing
    changes.

    Examples
    --------
    >>> import numpy as np
    >>> from nsm._blas_threads import one_blas_thread
    >>> with one_blas_thread():
    ...     s = np.linalg.svd(np.eye(3), compute_uv=False)
    >>> s.tolist()
    [1.0, 1.0, 1.0]
    """
    global _holders, _limits
    with _lock:
        if _holders == 0:
            _limits = threadpool_limits(limits=1, user_api="blas")
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and _limits is not None:
                _limits.restore_original_limits()
                _limits = None
