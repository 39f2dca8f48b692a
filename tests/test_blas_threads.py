"""nsm._blas_threads: one BLAS thread inside the block, the previous setting after it, whatever
the order in which overlapping blocks close."""

from __future__ import annotations

import pytest
from threadpoolctl import threadpool_info

from nsm._blas_threads import one_blas_thread


def blas_threads():
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


@pytest.fixture
def blas():
    before = blas_threads()
    if not before:  # e.g. Apple's Accelerate, which threadpoolctl does not see: nothing to limit
        pytest.skip("threadpoolctl sees no BLAS in this process")
    return before


def test_one_thread_inside_and_the_setting_restored_after(blas):
    with one_blas_thread():
        assert blas_threads() == [1] * len(blas)
    assert blas_threads() == blas


def test_overlapping_blocks_restore_the_setting_whatever_the_order_they_close_in(blas):
    # Two blocks open at once (two threads drawing matrices): the first opened closes first.
    # With each block restoring what it saw when it opened, the second restored "one thread"
    # and BLAS stayed on one thread for good.
    first, second = one_blas_thread(), one_blas_thread()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert blas_threads() == [1] * len(blas)  # the second block is still open
    second.__exit__(None, None, None)
    assert blas_threads() == blas
