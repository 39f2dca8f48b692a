"""What every figure of the plot room shares: matplotlib imported when first drawn (with the
non-interactive Agg backend), and one way to finish a figure (saved whole, only when a path is
given; the Figure returned either way)."""

from __future__ import annotations

import os
from typing import Any

from .._files import atomic_write

__all__ = ["finish", "pyplot"]


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend; an ImportError that says how to install it."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError(
            "drawing figures needs matplotlib: pip install "
            "'neuron-subspace-match[plot]' (or pip install matplotlib)"
        ) from exc
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def finish(plt: Any, fig: Any, path: Any) -> Any:
    """Save ``fig`` to ``path`` when given (atomically; the suffix picks the format, .png by
    default) and close it in pyplot (the Figure still draws and saves); return ``fig``."""
    if path is None:
        return fig
    # bbox_inches="tight" makes room for rotated labels and an outside legend at any count,
    # where tight_layout gives up (with a warning) on crowded axes.
    suffix = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or "png"
    with atomic_write(path, binary=True) as f:
        fig.savefig(f, format=suffix, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return fig
