"""Figures of a layer-by-layer comparison, drawn from what ``Comparison.save`` writes.

matplotlib is imported when a figure is drawn, with the non-interactive Agg backend.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from ._figures import finish, pyplot
from .labels import shorten_labels

__all__ = ["REPORT_FILES", "plot_curves", "plot_similarity", "plot_thresholds", "write_report"]

FIGURES = ("similarity.png", "curves.png", "thresholds.png")
#: What write_report writes into its folder.
REPORT_FILES = ("report.json", *FIGURES)
#: What ``nsm demo`` writes besides: the centred curves and the two heatmaps (``nsm demo``
#: checks every name before any work starts).
DEMO_FIGURES = ("curves_centred.png", "heatmap_match_auc.png", "heatmap_linear_cka.png")
DEMO_FILES = (*REPORT_FILES, *DEMO_FIGURES)


def _label(key: Any) -> str:
    return key if isinstance(key, str) else f"{key[0]} / {key[1]}"


def _labels(keys: list) -> tuple[str, list[str]]:
    """Short, distinct labels of layer keys and the prefix they all shared."""
    return shorten_labels([_label(k) for k in keys])


def _slot(n: int, most: float) -> float:
    """Inches per layer: ``most`` for a few layers, shrinking so 60 stay under ~26 in."""
    return max(0.4, min(most, 24.0 / max(n, 1)))


def _layer_ticks(ax: Any, positions: Any, labels: list[str], prefix: str) -> None:
    crowded = len(labels) > 8 or max((len(s) for s in labels), default=0) > 14
    ax.set_xticks(
        positions,
        labels,
        rotation=90 if crowded else 0,
        fontsize=7 if len(labels) > 30 else 8 if crowded else 9,
    )
    ax.set_xlabel("layer" + (f" ({prefix}…)" if prefix else ""))


def _starved(comparison: Any, keys: list) -> list[bool]:
    """Which layers are starved (``LayerComparison.few_samples``: docs/method.md, "Starved
    layers"); the figures mark them."""
    return [bool(comparison[k].few_samples) for k in keys]


def _starved_labels(labels: list[str], starved: list[bool]) -> list[str]:
    return [f"{label} *" if s else label for label, s in zip(labels, starved)]


def _match_title(comparison: Any, title: str) -> str:
    """The figure's title, saying so when it shows the centred match."""
    centered = [comparison[k].centered for k in comparison]
    if centered and all(centered):
        return f"{title} (centred match)"
    return f"{title} (some layers centred)" if any(centered) else title


STARVED_NOTE = "* starved: n_samples < {ratio:g} (n_x + n_y), similarity inflated"


def _starved_note(ax: Any, starved: list[bool]) -> None:
    """Under the x label (set it first), what the ``*`` of starved layers means."""
    if any(starved):
        from ..starved import FEW_SAMPLES_RATIO

        ax.set_xlabel(f"{ax.get_xlabel()}\n{STARVED_NOTE.format(ratio=FEW_SAMPLES_RATIO)}")


def curve_colors(plt: Any, n: int) -> np.ndarray:
    """``n`` distinct RGBA colours: tab10's for up to ten curves, then evenly spaced along a
    continuous colormap (turbo), so no colour repeats whatever the number of layers."""
    if n <= 10:
        return plt.cm.tab10(np.arange(n))
    return plt.cm.turbo(np.linspace(0.05, 0.95, n))


def plot_similarity(comparison: Any, path: Any = None) -> Any:
    """Bars: each layer's maximum-match similarity at the comparison's ε values, with the
    shifted-batch baseline drawn beside each bar (hatched). Starved layers (``few_samples``)
    stand on a shaded background and their labels carry ``*``.

    Returns the matplotlib Figure; saved to ``path`` (its suffix picks the format) only when
    given.

    Examples
    --------
    >>> import torch, tempfile, os, nsm.torch, nsm.plot
    >>> a = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU())
    >>> b = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU())
    >>> c = nsm.torch.compare(a, b, [torch.randn(64, 4) for _ in range(4)], "1", progress=False)
    >>> path = os.path.join(tempfile.mkdtemp(), "similarity.png")
    >>> fig = nsm.plot.plot_similarity(c, path=path)
    >>> type(fig).__name__, os.path.getsize(path) > 0
    ('Figure', True)
    """
    plt = pyplot()
    keys = list(comparison)
    eps = comparison.eps
    prefix, labels = _labels(keys)
    starved = _starved(comparison, keys)
    labels = _starved_labels(labels, starved)
    fig, ax = plt.subplots(
        figsize=(max(6.0, _slot(len(keys), 1.6) * len(keys) + 2), 4.8 if len(keys) <= 20 else 6.0)
    )
    for k in np.flatnonzero(starved):
        ax.axvspan(k - 0.5, k + 0.5, color="#f4dcdc", zorder=0, lw=0)
    width = 0.8 / len(eps)
    colors = plt.cm.viridis(np.linspace(0.1, 0.85, len(eps)))
    x = np.arange(len(keys))
    zero_marks = False
    for i, (e, color) in enumerate(zip(eps, colors)):
        sims = np.array([float(comparison[k].similarity(e)) for k in keys])
        bases = np.array([float(comparison[k].baseline(e)) for k in keys])
        offset = x - 0.4 + (i + 0.5) * width
        ax.bar(offset - width * 0.2, sims, width * 0.6, color=color, label=f"ε = {e:g}")
        ax.bar(
            offset + width * 0.3,
            np.nan_to_num(bases),
            width * 0.4,
            color=color,
            alpha=0.35,
            hatch="//",
            edgecolor="grey",
            linewidth=0.4,
        )
        # A bar of height 0 is invisible: mark it, so "0" differs from "not drawn".
        for where, values in ((offset - width * 0.2, sims), (offset + width * 0.3, bases)):
            zero = values == 0
            if zero.any():
                zero_marks = True
                ax.plot(
                    where[zero],
                    np.zeros(int(zero.sum())),
                    ls="",
                    marker="^",
                    ms=4,
                    color=color,
                    markeredgecolor="black",
                    markeredgewidth=0.4,
                    clip_on=False,
                    zorder=3,
                )
    ax.bar([np.nan], [np.nan], color="white", hatch="//", edgecolor="grey", label="baseline (hatched)")
    if zero_marks:
        ax.plot([], [], ls="", marker="^", ms=4, color="white", markeredgecolor="black", label="similarity 0")
    if any(starved):
        ax.bar([np.nan], [np.nan], color="#f4dcdc", label="starved *")
    _layer_ticks(ax, x, labels, prefix)
    _starved_note(ax, starved)
    ax.set_xlim(-0.6, len(keys) - 0.4)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("maximum-match similarity")
    ax.set_title(_match_title(comparison, "How much of each layer the other network shares"))
    ax.legend(
        fontsize=8, ncol=min(len(eps) + 2, 7), loc="lower center", bbox_to_anchor=(0.5, 1.08), frameon=False
    )
    return finish(plt, fig, path)


def plot_curves(comparison: Any, path: Any = None) -> Any:
    """Similarity as a function of ε, one curve per layer (solid) and its baseline (dashed);
    a shaded band, ±1.96 jackknife standard errors at each ε, for layers compared with ``groups``
    (a rough guide: the similarity at one ε is a step function and its interval undercovers;
    docs/method.md, "Error bars").
    Starved layers (``few_samples``) are drawn dotted and their labels carry ``*``.

    Returns the matplotlib Figure; saved to ``path`` (its suffix picks the format) only when
    given.

    Examples
    --------
    >>> import torch, tempfile, os, nsm.torch, nsm.plot
    >>> a = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU())
    >>> c = nsm.torch.compare(a, a, [torch.randn(64, 4) for _ in range(4)], "1", progress=False)
    >>> path = os.path.join(tempfile.mkdtemp(), "curves.png")
    >>> fig = nsm.plot.plot_curves(c, path=path)
    >>> type(fig).__name__, os.path.getsize(path) > 0
    ('Figure', True)
    """
    plt = pyplot()
    grid = np.linspace(0.0, 1.0, 401)
    keys = list(comparison)
    prefix, labels = _labels(keys)
    columns = max(1, math.ceil(len(keys) / 30))
    fig, ax = plt.subplots(figsize=(6.4 + 2.2 * columns, 4.4 if len(keys) <= 20 else 6.4))
    colors = curve_colors(plt, len(keys))
    banded = False
    starved = _starved(comparison, keys)
    for key, label, color, thin in zip(keys, _starved_labels(labels, starved), colors, starved):
        lc = comparison[key]
        ax.plot(
            grid,
            lc.similarity(grid),
            color=color,
            lw=2 if len(keys) <= 20 else 1.2,
            ls=":" if thin else "-",
            drawstyle="steps-post",
            label=label,
        )
        base = lc.baseline(grid)
        if not np.all(np.isnan(base)):
            ax.plot(grid, base, color=color, lw=1.0, ls="--", drawstyle="steps-post")
        banded = _interval_band(ax, lc, grid, color) or banded
    ax.plot([], [], color="grey", ls="--", label="baseline (pairing broken)")
    if any(starved):
        ax.plot([], [], color="grey", ls=":", lw=2, label="starved * (dotted)")
    if banded:
        ax.fill_between(
            [],
            [],
            [],
            color="grey",
            alpha=0.2,
            lw=0,
            label="±1.96 jackknife se\n(a rough guide at one ε:\nsee docs/method.md)",
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("ε (largest relative error allowed)")
    _starved_note(ax, starved)
    ax.set_ylabel("maximum-match similarity")
    ax.set_title(_match_title(comparison, "Similarity against ε, per layer"))
    ax.grid(alpha=0.3)
    # Outside the axes, so it never covers a curve.
    ax.legend(
        fontsize=8 if len(keys) <= 20 else 6.5,
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        ncol=columns,
        frameon=False,
        title=f"{prefix}…" if prefix else None,
        title_fontsize=8,
    )
    return finish(plt, fig, path)


def _interval_band(ax: Any, lc: Any, grid: np.ndarray, color: Any) -> bool:
    """Shade the layer's ±1.96 jackknife se band of the similarity (clipped to [0, 1]) when it
    kept groups; whether it did."""
    if getattr(lc, "groups", None) is None:
        return False
    low, high = lc.similarity_interval(grid)
    ax.fill_between(grid, np.clip(low, 0, 1), np.clip(high, 0, 1), step="post", color=color, alpha=0.2, lw=0)
    return True


def plot_thresholds(comparison: Any, path: Any = None) -> Any:
    """The distribution of the neurons' critical ε, per layer (both networks' neurons).
    Starved layers (``few_samples``) are hatched and their labels carry ``*``.

    Returns the matplotlib Figure; saved to ``path`` (its suffix picks the format) only when
    given.

    Examples
    --------
    >>> import torch, tempfile, os, nsm.torch, nsm.plot
    >>> a = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU())
    >>> b = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU())
    >>> c = nsm.torch.compare(a, b, [torch.randn(64, 4) for _ in range(4)], "1", progress=False)
    >>> path = os.path.join(tempfile.mkdtemp(), "thresholds.png")
    >>> fig = nsm.plot.plot_thresholds(c, path=path)
    >>> type(fig).__name__, os.path.getsize(path) > 0
    ('Figure', True)
    """
    plt = pyplot()
    keys = list(comparison)
    prefix, short = _labels(keys)
    starved = _starved(comparison, keys)
    short = _starved_labels(short, starved)
    fig, ax = plt.subplots(figsize=(max(6.0, _slot(len(keys), 1.4) * len(keys) + 2), 4.2))
    data, labels = [], []
    for key, label in zip(keys, short):
        t = np.concatenate([comparison[key].thresholds.x, comparison[key].thresholds.y])
        t = t[np.isfinite(t)]
        data.append(t if len(t) else np.array([np.nan]))
        labels.append(f"{label} (n={len(t)})" if len(keys) > 8 else f"{label}\n(n={len(t)})")
    parts = ax.violinplot(data, showmedians=True, showextrema=True)
    for body, thin in zip(parts["bodies"], starved):
        body.set_alpha(0.5)
        if thin:
            body.set_hatch("xx")
            body.set_edgecolor("#a04040")
    _layer_ticks(ax, np.arange(1, len(keys) + 1), labels, prefix)
    _starved_note(ax, starved)
    ax.set_xlim(0.4, len(keys) + 0.6)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("critical ε of a neuron")
    ax.set_title(_match_title(comparison, "At what ε each neuron joins the maximum match"))
    ax.grid(axis="y", alpha=0.3)
    return finish(plt, fig, path)


def write_report(comparison: Any, out_dir: Any, write_json: bool = True) -> list[str]:
    """Write ``report.json`` and the three figures into ``out_dir`` (created if needed),
    replacing files of those names (``nsm report`` and ``nsm demo`` refuse to unless given
    ``--force``). With ``write_json=False`` only the figures. Returns the paths written.

    Examples
    --------
    >>> import torch, tempfile, os, nsm.torch, nsm.plot
    >>> a = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU())
    >>> c = nsm.torch.compare(a, a, [torch.randn(64, 4) for _ in range(4)], "1", progress=False)
    >>> [os.path.basename(p) for p in nsm.plot.write_report(c, tempfile.mkdtemp())]
    ['report.json', 'similarity.png', 'curves.png', 'thresholds.png']
    """
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    if write_json:
        paths.append(os.path.join(out_dir, "report.json"))
        comparison.save(paths[0])
    for name, draw in zip(FIGURES, (plot_similarity, plot_curves, plot_thresholds)):
        path = os.path.join(out_dir, name)
        draw(comparison, path=path)
        paths.append(path)
    return paths
