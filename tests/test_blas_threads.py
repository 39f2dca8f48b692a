"""nsm.blas_threads: one BLAS thread inside the block, the previous setting after it."""

from __future__ import annotations

from threadpoolctl import threadpool_info

from nsm.blas_threads import one_blas_thread


def blas_threads():
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_one_thread_inside_and_the_setting_restored_after():
    before = blas_threads()
    assert before  # NumPy's BLAS is loaded, so there is something to limit
    with one_blas_thread():
        assert blas_threads() == [1] * len(before)
    assert blas_threads() == before
