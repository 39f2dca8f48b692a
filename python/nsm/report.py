"""Figures of a layer-by-layer comparison, drawn from what ``Comparison.save`` writes.

matplotlib is imported when a figure is drawn, with the non-interactive Agg backend.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["plot_curves", "plot_similarity", "plot_thresholds", "write_report"]

FIGURES = ("similarity.png", "curves.png", "thresholds.png")


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError("drawing figures needs matplotlib: pip install "
                          "'neuron-subspace-match[plot]' (or pip install matplotlib)") from exc
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, fig: Any, path: Any) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _label(key: Any) -> str:
    return key if isinstance(key, str) else f"{key[0]} / {key[1]}"


def plot_similarity(comparison: Any, path: Any) -> None:
    """Bars: each layer's maximum-match similarity at the comparison's ε values, with the
    shifted-batch baseline drawn beside each bar (hatched).

    Examples
    --------
    >>> import torch, tempfile, os, nsm.torch, nsm.report
    >>> a = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU())
    >>> b = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU())
    >>> c = nsm.torch.compare(a, b, [torch.randn(64, 4) for _ in range(4)], "1", progress=False)
    >>> path = os.path.join(tempfile.mkdtemp(), "similarity.png")
    >>> nsm.report.plot_similarity(c, path); os.path.getsize(path) > 0
    True
    """
    plt = _pyplot()
    keys = list(comparison)
    eps = comparison.eps
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(keys) + 2), 4.8))
    width = 0.8 / len(eps)
    colors = plt.cm.viridis(np.linspace(0.1, 0.85, len(eps)))
    x = np.arange(len(keys))
    for i, (e, color) in enumerate(zip(eps, colors)):
        sims = [float(comparison[k].similarity(e)) for k in keys]
        bases = [float(comparison[k].baseline(e)) for k in keys]
        offset = x - 0.4 + (i + 0.5) * width
        ax.bar(offset - width * 0.2, sims, width * 0.6, color=color, label=f"ε = {e:g}")
        ax.bar(offset + width * 0.3, np.nan_to_num(bases), width * 0.4, color=color, alpha=0.35,
               hatch="//", edgecolor="grey", linewidth=0.4)
    ax.bar([np.nan], [np.nan], color="white", hatch="//", edgecolor="grey", label="baseline (hatched)")
    ax.set_xticks(x, [_label(k) for k in keys])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("maximum-match similarity")
    ax.set_xlabel("layer")
    ax.set_title("How much of each layer the other network shares")
    ax.legend(fontsize=8, ncol=min(len(eps) + 1, 6), loc="upper center", bbox_to_anchor=(0.5, -0.14),
              frameon=False)
    _save(plt, fig, path)


def plot_curves(comparison: Any, path: Any) -> None:
    """Similarity as a function of ε, one curve per layer (solid) and its baseline (dashed).

    Examples
    --------
    >>> import torch, tempfile, os, nsm.torch, nsm.report
    >>> a = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU())
    >>> c = nsm.torch.compare(a, a, [torch.randn(64, 4) for _ in range(4)], "1", progress=False)
    >>> path = os.path.join(tempfile.mkdtemp(), "curves.png")
    >>> nsm.report.plot_curves(c, path); os.path.getsize(path) > 0
    True
    """
    plt = _pyplot()
    grid = np.linspace(0.0, 1.0, 401)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    colors = plt.cm.tab10(np.arange(len(comparison)) % 10)
    for key, color in zip(comparison, colors):
        lc = comparison[key]
        ax.plot(grid, lc.similarity(grid), color=color, lw=2, drawstyle="steps-post",
                label=_label(key))
        base = lc.baseline(grid)
        if not np.all(np.isnan(base)):
            ax.plot(grid, base, color=color, lw=1.2, ls="--", drawstyle="steps-post")
    ax.plot([], [], color="grey", ls="--", label="baseline (pairing broken)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("ε (largest relative error allowed)")
    ax.set_ylabel("maximum-match similarity")
    ax.set_title("Similarity against ε, per layer")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    _save(plt, fig, path)


def plot_thresholds(comparison: Any, path: Any) -> None:
    """The distribution of the neurons' critical ε, per layer (both networks' neurons).

    Examples
    --------
    >>> import torch, tempfile, os, nsm.torch, nsm.report
    >>> a = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU())
    >>> b = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU())
    >>> c = nsm.torch.compare(a, b, [torch.randn(64, 4) for _ in range(4)], "1", progress=False)
    >>> path = os.path.join(tempfile.mkdtemp(), "thresholds.png")
    >>> nsm.report.plot_thresholds(c, path); os.path.getsize(path) > 0
    True
    """
    plt = _pyplot()
    keys = list(comparison)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(keys) + 2), 4.2))
    data, labels = [], []
    for key in keys:
        t = np.concatenate([comparison[key].thresholds.x, comparison[key].thresholds.y])
        t = t[np.isfinite(t)]
        data.append(t if len(t) else np.array([np.nan]))
        labels.append(f"{_label(key)}\n(n={len(t)})")
    parts = ax.violinplot(data, showmedians=True, showextrema=True)
    for body in parts["bodies"]:
        body.set_alpha(0.5)
    ax.set_xticks(np.arange(1, len(keys) + 1), labels)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("critical ε of a neuron")
    ax.set_title("At what ε each neuron joins the maximum match")
    ax.grid(axis="y", alpha=0.3)
    _save(plt, fig, path)


def write_report(comparison: Any, out_dir: Any) -> list[str]:
    """Write ``report.json`` and the three figures into ``out_dir`` (created if needed).
    Returns the paths written.

    Examples
    --------
    >>> import torch, tempfile, os, nsm.torch, nsm.report
    >>> a = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU())
    >>> c = nsm.torch.compare(a, a, [torch.randn(64, 4) for _ in range(4)], "1", progress=False)
    >>> [os.path.basename(p) for p in nsm.report.write_report(c, tempfile.mkdtemp())]
    ['report.json', 'similarity.png', 'curves.png', 'thresholds.png']
    """
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, "report.json")]
    comparison.save(paths[0])
    for name, draw in zip(FIGURES, (plot_similarity, plot_curves, plot_thresholds)):
        path = os.path.join(out_dir, name)
        draw(comparison, path)
        paths.append(path)
    return paths
