"""Turning checked activations into blocks the core reads (float32/float64, addressable in place)."""

from __future__ import annotations

import numpy as np

CORE_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def read_in_place(a: np.ndarray) -> bool:
    """True when the core can read ``a`` as it is: a float32/float64 dtype (equal to the native
    one, whatever object holds it) and strides that are whole, aligned items (a field of a
    structured array, for example, is not)."""
    return a.dtype in CORE_DTYPES and a.flags.aligned and all(s % a.dtype.itemsize == 0 for s in a.strides)


def as_core_dtype(block: np.ndarray) -> np.ndarray:
    """``block`` itself when the core reads it in place, else a contiguous float32 (small
    floats) or float64 (ints, bools, wide floats) copy of it."""
    if read_in_place(block):
        return block
    small_float = block.dtype.kind == "f" and block.dtype.itemsize <= 4
    return np.ascontiguousarray(block, dtype=np.float32 if small_float else np.float64)
