"""Which engine computes a match: the C++ core or the torch engine, and on which device.

``engine="auto"`` takes the torch engine when the work is on a GPU (a ``device`` that is not
the CPU, or a Gram held as a tensor on one) and the core otherwise; ``"core"`` and ``"torch"``
force one. Both give the same results (docs/method.md, "The torch engine"); results record
which one made them (their ``engine`` attribute).
"""

from __future__ import annotations

from typing import Any, Literal

__all__ = ["ENGINES", "Engine", "check_engine", "choose_engine", "torch_engine"]

Engine = Literal["auto", "core", "torch"]
ENGINES = ("auto", "core", "torch")


def check_engine(engine: Any, device: Any) -> tuple[str, Any]:
    """``(engine, device)`` checked: engine one of ``ENGINES``, device None or what
    ``torch.device`` takes (checked only when torch is needed).

    >>> check_engine("auto", None)
    ('auto', None)
    """
    if not isinstance(engine, str) or engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if device is not None:
        dev = _torch_device(device)
        if engine == "core" and dev.type != "cpu":
            raise ValueError(
                f"engine='core' runs on the CPU but device={str(dev)!r}: pass engine='torch' (or 'auto') "
                "to match on that device"
            )
        device = dev
    return engine, device


def core_threads(n: int, requested: int) -> int:
    """The threads the C++ engine runs a pair of ``n`` neurons on: one per 1,024 neurons, at
    most ``requested`` (a grid runs narrower pairs side by side instead).

    >>> core_threads(4096, 1), core_threads(4096, 2) in (1, 2)
    (1, True)
    """
    from .. import _core

    return int(_core.engine_threads(n, requested))


def choose_engine(engine: str, device: Any, data_device: Any = None) -> str:
    """The engine that runs: ``"core"`` or ``"torch"`` (``engine`` and ``device`` checked by
    :func:`check_engine`; ``data_device``: where the Gram lives, None for the CPU).

    >>> choose_engine("auto", None)
    'core'
    """
    if engine != "auto":
        return engine
    where = device if device is not None else data_device
    return "torch" if where is not None and getattr(where, "type", str(where)) != "cpu" else "core"


def _torch_device(device: Any) -> Any:
    torch = _import_torch("device=")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device must be a torch device or its name, got {device!r}") from error


def _import_torch(what: str) -> Any:
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            f"{what} needs PyTorch, which is not installed: pip install 'nsm[torch]' (or pip install torch)"
        ) from error
    return torch


def torch_engine(matrix: Any, n_x: int, n_samples: int, dead_tol: float, device: Any) -> Any:
    """The torch engine of a Gram matrix (numpy or a tensor) on ``device`` (None: where the
    matrix lives, the CPU for numpy)."""
    torch = _import_torch("engine='torch'")
    from ._torch_engine import TorchEngine

    dev = None if device is None else torch.device(device)
    if dev is not None and dev.type == "mps":
        raise ValueError("engine='torch' needs float64, which the MPS device lacks: use device='cpu'")
    if dev is not None and dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={str(dev)!r} but this torch has no CUDA device (torch.cuda.is_available() is False)"
        )
    return TorchEngine(matrix, n_x, n_samples, dead_tol, device)
