"""Turning what users pass (numpy arrays, torch tensors, lists) into arrays the core reads."""

from __future__ import annotations

import numbers
import os
import sys
from typing import Any

import numpy as np

CORE_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def default_threads() -> int:
    """Cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def check_threads(num_threads: Any) -> int:
    """Validate a ``num_threads`` argument; None means all cores of this process."""
    if num_threads is None:
        return default_threads()
    if isinstance(num_threads, bool) or not isinstance(num_threads, numbers.Integral):
        raise TypeError(f"num_threads must be a positive int or None, got {num_threads!r}")
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    return int(num_threads)


def is_torch_tensor(a: Any) -> bool:
    """True for a torch.Tensor, without importing torch when the caller never did."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(a, torch.Tensor)


def as_activations(a: Any, name: str) -> np.ndarray:
    """View ``a`` as a 2-D real numpy array of shape (n_samples, n_neurons), without copying
    numpy input or CPU tensors. Raises TypeError or ValueError naming ``name``."""
    if is_torch_tensor(a):
        if a.device.type != "cpu":
            raise TypeError(
                f"{name} is a torch tensor on {a.device}; pass a CPU tensor (.cpu()) or "
                "accumulate the Gram with nsm.Gram.update batch by batch"
            )
        a = a.detach()
        if a.is_complex():
            raise TypeError(f"{name} must be real, got a complex tensor ({a.dtype})")
        if not a.is_floating_point() or a.dtype not in _torch_float_types():
            a = a.to(_torch_float64())  # ints, bool, bfloat16: numpy has no view of these
        a = a.numpy()
    elif not isinstance(a, np.ndarray):
        try:
            a = np.asarray(a)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"{name} must be an array of shape (n_samples, n_neurons): {exc}") from exc
    if a.dtype.kind == "c":
        raise TypeError(f"{name} must be real, got complex dtype {a.dtype}")
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must have a numeric dtype, got {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_neurons), got shape {a.shape}")
    if a.shape[1] == 0:
        raise ValueError(f"{name} has no neurons (shape {a.shape})")
    if a.shape[0] == 0:
        raise ValueError(f"{name} has no samples (shape {a.shape})")
    return a


def _torch_float_types() -> tuple[Any, ...]:
    torch = sys.modules["torch"]
    return (torch.float32, torch.float64, torch.float16)


def _torch_float64() -> Any:
    return sys.modules["torch"].float64


def as_core_dtype(block: np.ndarray) -> np.ndarray:
    """``block`` itself when the core reads its dtype (float32, float64, native byte order),
    else a float32 (small floats) or float64 (ints, bools, wide floats) copy of it."""
    if block.dtype in CORE_DTYPES:
        return block
    small_float = block.dtype.kind == "f" and block.dtype.itemsize <= 4
    return np.asarray(block, dtype=np.float32 if small_float else np.float64)
