"""Which build of the core's dense kernels this process runs."""

from __future__ import annotations

from . import _core

__all__ = ["kernel_name"]


def kernel_name() -> str:
    """The CPU kernel set nsm's core uses in this process.

    The dense kernels (the Gram's products, the pivoted Cholesky, the triangular solves) are
    compiled for several instruction sets and the best one this CPU supports is chosen at
    import. Results are bit-for-bit reproducible for the same thread count and kernel set, so
    this name belongs beside any result that is compared across machines.

    Returns
    -------
    str
        ``"generic"`` (x86-64 baseline, or any other CPU), ``"avx2"`` (AVX2 with FMA) or
        ``"avx512"``.

    Examples
    --------
    >>> import nsm
    >>> nsm.kernel_name() in {"generic", "avx2", "avx512"}
    True
    """
    return _core.kernel_name()
