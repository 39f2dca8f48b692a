"""Every check of what users pass, in one place: each raises TypeError or ValueError naming the
argument and saying what to pass. The compiled core keeps only invariants.

>>> from nsm.validation import check_eps
>>> check_eps([0.1, 0.5])
([0.1, 0.5], False)
>>> check_eps("0.1")
Traceback (most recent call last):
TypeError: eps must be a number or a sequence of numbers, got '0.1'
"""

from __future__ import annotations

import math
import numbers
import os
import sys
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

__all__ = [
    "check_choice",
    "check_max_batches",
    "check_per_site",
    "DEFAULT_PRECISION",
    "PRECISIONS",
    "Precision",
    "check_precision",
    "MAX_EPS",
    "check_activations",
    "check_batch",
    "check_bool",
    "check_column_sums",
    "check_count",
    "check_dead_tol",
    "check_eps",
    "check_gram_matrix",
    "check_keep",
    "check_layer_names",
    "check_layer_size",
    "check_neuron",
    "check_order",
    "check_seed",
    "check_similarity",
    "check_sites",
    "check_threads",
    "default_threads",
    "single_eps",
]

MAX_EPS = 1.0
DEFAULT_DEAD_TOL = 1e-20
ORDERS = ("xy", "random")

# A saved or user-built Gram is a Gram up to rounding when its cosine matrix (the Gram scaled
# to a unit diagonal) has no cosine above 1 + COSINE_SLACK and no eigenvalue below
# -PSD_SLACK * n. Both are far above the rounding of a float64 (or even float32) accumulation
# and far below anything that changes a match.
COSINE_SLACK = 1e-6
PSD_SLACK = 1e-6
ROUNDING_SLACK = 1e-10


def default_threads() -> int:
    """Cores this process may use (its CPU affinity on Linux)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def check_threads(num_threads: Any) -> int:
    """The rule for every ``num_threads`` argument of nsm.

    None means every core this process may use. An int >= 1 asks for that many threads,
    capped at the cores this process may use: the work is compute-bound, so more threads
    than cores only slows it down, and tens of thousands of OpenMP threads exhaust the
    process. The compiled core applies the same cap (and runs on one thread in a process
    forked from one that ran nsm's threads: GNU OpenMP's thread pool does not survive fork).

    >>> from nsm.validation import check_threads, default_threads
    >>> check_threads(10**6) == default_threads()
    True
    """
    if num_threads is None:
        return default_threads()
    if isinstance(num_threads, bool) or not isinstance(num_threads, numbers.Integral):
        raise TypeError(f"num_threads must be a positive int or None, got {num_threads!r}")
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    return min(int(num_threads), default_threads())


def check_bool(value: Any, name: str) -> bool:
    """A flag: True or False (numpy bools too), never a string or a number."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r}")


def _eps_float(e: Any) -> float:
    try:
        value = float(e)
    except OverflowError:
        raise ValueError(f"eps must be finite and in [0, 1], got {e!r}") from None
    if not math.isfinite(value) or not 0.0 <= value <= MAX_EPS:
        raise ValueError(f"eps must be finite and in [0, 1], got {value}")
    return value


def check_eps(eps: Any) -> tuple[list[float], bool]:
    """The ε values as floats in [0, 1], and whether a single number was given (numbers and
    0-d arrays are single; 1-D sequences and arrays give one result per value)."""
    if isinstance(eps, numbers.Real) and not isinstance(eps, (bool, np.bool_)):
        return [_eps_float(eps)], True
    if isinstance(eps, (str, bytes, bool, np.bool_)) or eps is None:
        raise TypeError(f"eps must be a number or a sequence of numbers, got {eps!r}")
    try:
        arr = np.asarray(eps)
    except Exception as exc:
        raise TypeError(f"eps must be a number or a sequence of numbers, got {eps!r}") from exc
    if arr.dtype.kind == "O" and arr.ndim == 1:  # Python ints too large for int64
        if not all(isinstance(e, numbers.Real) and not isinstance(e, bool) for e in arr.tolist()):
            raise TypeError(f"eps must be a number or a 1-D sequence of numbers, got {eps!r}")
    elif arr.dtype.kind not in "iuf" or arr.ndim > 1:
        raise TypeError(f"eps must be a number or a 1-D sequence of numbers, got {eps!r}")
    if arr.ndim == 0:
        return [_eps_float(arr.item())], True
    if arr.size == 0:
        raise ValueError("eps is an empty sequence")
    return [_eps_float(e) for e in arr.tolist()], False


def single_eps(eps: Any, message: str = "eps must be a single number here") -> float:
    """One checked ε; TypeError(message) for a sequence."""
    values, single = check_eps(eps)
    if not single:
        raise TypeError(message)
    return values[0]


def check_similarity(similarity: Any) -> float:
    """A target similarity in (0, 1]."""
    if isinstance(similarity, (bool, np.bool_)) or not isinstance(similarity, numbers.Real):
        raise TypeError(f"similarity must be a number in (0, 1], got {similarity!r}")
    value = float(similarity)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"similarity must be in (0, 1], got {value}")
    return value


def check_dead_tol(dead_tol: Any) -> float:
    """``dead_tol`` in [0, 1): a neuron is dead when G_vv <= dead_tol * max G_uu of its layer
    (1 or more would call the largest neuron dead)."""
    if dead_tol is None:
        return DEFAULT_DEAD_TOL
    if isinstance(dead_tol, (bool, np.bool_)) or not isinstance(dead_tol, numbers.Real):
        raise TypeError(f"dead_tol must be a number, got {dead_tol!r}")
    value = float(dead_tol)
    if not math.isfinite(value) or not 0.0 <= value < 1.0:
        raise ValueError(f"dead_tol must be in [0, 1), got {value}")
    return value


def check_keep(keep: Any) -> float:
    """SVCCA's ``keep``: the fraction of a layer's variance its kept directions explain, in (0, 1]."""
    if isinstance(keep, (bool, np.bool_)) or not isinstance(keep, numbers.Real):
        raise TypeError(f"keep must be a number in (0, 1], got {keep!r}")
    value = float(keep)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"keep must be in (0, 1] (the fraction of variance kept), got {value}")
    return value


def check_layer_names(names: Any) -> tuple[str, str]:
    """``names``: the two layers' names, a pair of str (used in warnings)."""
    if not isinstance(names, (tuple, list)) or len(names) != 2 or not all(isinstance(n, str) for n in names):
        raise TypeError(f"names must be a pair of layer names (str, str), got {names!r}")
    return names[0], names[1]


def check_sites(sites: Any, name: str) -> tuple[str, ...]:
    """A list of distinct site names (str), at least one."""
    if isinstance(sites, str) or not isinstance(sites, (list, tuple)):
        raise TypeError(f"{name} must be a list of site names (str), got {sites!r}")
    out = tuple(sites)
    if not out:
        raise ValueError(f"{name} is empty: give at least one site")
    for s in out:
        if not isinstance(s, str):
            raise TypeError(f"{name} must hold site names (str), got {s!r}")
    dup = sorted({s for s in out if out.count(s) > 1})
    if dup:
        raise ValueError(f"{name} names a site twice: {', '.join(dup)}")
    return out


def check_layer_size(value: Any, name: str) -> int:
    """A number of neurons: an int >= 1."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1 (a layer needs a neuron), got {value}")
    return int(value)


def check_count(value: Any, name: str) -> int:
    """A count such as ``n_samples``: an int >= 0 (a float, even 2.0, is refused)."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return int(value)


def check_seed(seed: Any) -> Any:
    """``seed`` for a random order: None, an int >= 0 or a numpy Generator."""
    if seed is None or isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be None, an int or a numpy Generator, got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return int(seed)


def check_order(order: Any) -> str:
    """The trial order of a minimal-match search: 'xy' or 'random'."""
    if not isinstance(order, str) or order not in ORDERS:
        raise ValueError(f"order must be 'xy' or 'random', got {order!r}")
    return order


def check_neuron(neuron: Any, n_x: int, n_y: int, name: str = "neuron") -> tuple[str, int]:
    """A neuron as ('x', i) or ('y', j), in range."""
    if (
        not isinstance(neuron, (tuple, list))
        or len(neuron) != 2
        or neuron[0] not in ("x", "y")
        or isinstance(neuron[1], (bool, np.bool_))
        or not isinstance(neuron[1], numbers.Integral)
    ):
        raise TypeError(f"{name} must be ('x', i) or ('y', j), got {neuron!r}")
    side, index = neuron[0], int(neuron[1])
    size = n_x if side == "x" else n_y
    if not 0 <= index < size:
        raise ValueError(f"{name} {tuple(neuron)!r} is out of range: layer {side.upper()} has {size} neurons")
    return side, index


def _is_torch_tensor(a: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(a, torch.Tensor)


def check_activations(a: Any, name: str) -> np.ndarray:
    """View ``a`` as a 2-D real numpy array of shape (n_samples, n_neurons), without copying
    numpy input or CPU tensors. Raises TypeError or ValueError naming ``name``."""
    if _is_torch_tensor(a):
        torch = sys.modules["torch"]
        if a.device.type != "cpu":
            raise TypeError(
                f"{name} is a torch tensor on {a.device}; pass a CPU tensor (.cpu()) or "
                "accumulate the Gram with nsm.Gram.update batch by batch"
            )
        a = a.detach()
        if a.is_complex():
            raise TypeError(f"{name} must be real, got a complex tensor ({a.dtype})")
        if a.dtype not in (torch.float32, torch.float64, torch.float16):
            a = a.to(torch.float64)  # ints, bool, bfloat16: numpy has no view of these
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


def check_batch(
    X: Any, Y: Any, n_x: int | None = None, n_y: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Two layers' activations on the same samples (and, for an existing Gram, with its
    numbers of neurons)."""
    X = check_activations(X, "X")
    Y = check_activations(Y, "Y")
    if n_x is not None and X.shape[1] != n_x:
        raise ValueError(f"X has {X.shape[1]} neurons but this Gram's layer X has {n_x}")
    if n_y is not None and Y.shape[1] != n_y:
        raise ValueError(f"Y has {Y.shape[1]} neurons but this Gram's layer Y has {n_y}")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} samples but Y has {Y.shape[0]}")
    return X, Y


def _real_array(value: Any, name: str) -> np.ndarray:
    """``value`` as a float64 array; complex, non-numeric and object input refused."""
    if _is_torch_tensor(value):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype.kind == "c":
        raise TypeError(f"{name} must be real, got complex dtype {arr.dtype}")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def check_gram_matrix(matrix: Any, name: str = "matrix") -> np.ndarray:
    """A symmetric positive semi-definite (n, n) float64 matrix up to rounding: finite, a
    non-negative diagonal, cosines ``|G_uv| / sqrt(G_uu G_vv)`` at most 1 + 1e-6 (entries of
    1e-10 max G_ww and less always pass) and no eigenvalue of the cosine matrix of the neurons
    with G_vv > 1e-10 max G_ww below -1e-6 n. Only the lower triangle is read (the upper
    one is taken as its mirror); returns it.

    >>> import numpy as np
    >>> from nsm.validation import check_gram_matrix
    >>> check_gram_matrix(np.array([[1.0, 2.0], [2.0, 1.0]]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: matrix is not a Gram matrix: entry (0, 1) exceeds sqrt(G_ii G_jj) (a cosine of 2, ...
    """
    m = _real_array(matrix, name)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"{name} must be square, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError(f"{name} contains NaN or Inf")
    lower = np.tril(m)
    full = lower + np.tril(m, -1).T
    # Rounding of a Gram assembled from parts (a difference of sums, say) leaves entries of
    # about eps_machine * its largest entry, even a slightly negative squared norm: allowed
    # around neurons whose norm is that small (they are dead).
    rounding = ROUNDING_SLACK * float(np.abs(np.diag(full)).max(initial=0.0))
    diag = np.diag(full)
    if np.any(diag < -rounding):
        bad = int(np.flatnonzero(diag < -rounding)[0])
        raise ValueError(
            f"{name} has a negative diagonal entry at {bad}: a Gram matrix's diagonal holds squared norms"
        )
    diag = np.maximum(diag, 0.0)
    norms = np.sqrt(diag)
    bound = np.outer(norms, norms) * (1.0 + COSINE_SLACK) + rounding
    over = np.abs(full) > bound
    if np.any(over):
        i, j = (int(k) for k in np.argwhere(over)[0])
        product = diag[i] * diag[j]
        cosine = "inf" if product == 0 else f"{abs(full[i, j]) / np.sqrt(product):.6g}"
        raise ValueError(
            f"{name} is not a Gram matrix: entry ({i}, {j}) exceeds sqrt(G_ii G_jj) (a cosine of "
            f"{cosine}, above 1); pass [X Y]ᵀ[X Y] of real activations"
        )
    live = diag > rounding  # the others are rounding
    scale = np.where(live, 1.0 / np.where(live, norms, 1.0), 0.0)
    cosine = full * np.outer(scale, scale)
    n = m.shape[0]
    shift = PSD_SLACK * n
    try:
        np.linalg.cholesky(cosine + shift * np.eye(n))
    except np.linalg.LinAlgError:
        smallest = float(np.linalg.eigvalsh(cosine)[0])
        raise ValueError(
            f"{name} is not a Gram matrix: it is not positive semi-definite (its cosine matrix "
            f"has an eigenvalue {smallest:.3g} < 0 beyond rounding); pass [X Y]ᵀ[X Y] of real "
            "activations"
        ) from None
    return lower


def check_column_sums(sums: Any, diag: np.ndarray, n_samples: int) -> np.ndarray:
    """Column sums of (n,) floats consistent with the Gram's diagonal: by Cauchy-Schwarz
    ``|s_v| <= sqrt(n_samples G_vv)``; None gives zeros."""
    n = diag.shape[0]
    if sums is None:
        return np.zeros(n)
    s = _real_array(sums, "column_sums")
    if s.shape != (n,):
        raise ValueError(f"column_sums must have shape ({n},), got {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("column_sums contains NaN or Inf")
    bound = np.sqrt(n_samples * np.maximum(diag, 0.0)) * (1.0 + COSINE_SLACK)
    over = np.abs(s) > bound
    if np.any(over):
        v = int(np.flatnonzero(over)[0])
        raise ValueError(
            f"column_sums[{v}] = {s[v]:g} is impossible for a neuron of squared norm {diag[v]:g} "
            f"over {n_samples} samples (|sum| <= sqrt(n_samples * G_vv))"
        )
    return s


Precision = Literal["float64", "mixed"]
PRECISIONS = ("float64", "mixed")
# The default of every Gram pass. bench/bench_gram_precision.py measured "mixed": within 1e-5 of
# the float64 pass on realistic layers, but 2.8e-3 on near-duplicate neurons at 5,000 samples and
# 48 + 48 neurons, over the 1e-3 bound for the hard families: so float64 stays the default and
# "mixed" is asked for (docs/method.md, "Mixed precision").
DEFAULT_PRECISION: Precision = "float64"


def check_precision(precision: Any) -> Precision:
    """A ``precision`` argument: "float64" or "mixed" (see :class:`nsm.Gram`).

    >>> check_precision("mixed")
    'mixed'
    """
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"precision must be 'float64' or 'mixed', got {precision!r}")
    return precision  # type: ignore[return-value]


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (a layout, a token mode, a sample mode).

    >>> check_choice("mean", "tokens", ("samples", "mean"))
    'mean'
    """
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_per_site(value: Any, name: str, choices: tuple[str, ...]) -> Any:
    """None, one of ``choices`` for every site, or a dict of them by site label or pair.

    >>> check_per_site({"fc": "nc"}, "layout", ("nc", "nchw"))
    {'fc': 'nc'}
    """
    if value is None:
        return None
    if isinstance(value, Mapping):
        for key, v in value.items():
            check_choice(v, f"{name}[{key!r}]", choices)
        return dict(value)
    return check_choice(value, name, choices)


def check_max_batches(max_batches: Any) -> int | None:
    """None (every batch) or a positive int.

    >>> check_max_batches(3)
    3
    """
    if max_batches is None:
        return None
    if isinstance(max_batches, bool) or not isinstance(max_batches, numbers.Integral) or max_batches < 1:
        raise ValueError(f"max_batches must be a positive int or None, got {max_batches!r}")
    return int(max_batches)


def check_groups(groups: Any) -> int | None:
    """``groups`` for the jackknife: None (no error bars) or an int >= 2."""
    if groups is None:
        return None
    if isinstance(groups, (bool, np.bool_)) or not isinstance(groups, numbers.Integral):
        raise TypeError(
            f"groups must be None or an int >= 2 (the number of jackknife groups), got {groups!r}"
        )
    if groups < 2:
        raise ValueError(f"groups must be >= 2 (the jackknife leaves one group out of several), got {groups}")
    return int(groups)
