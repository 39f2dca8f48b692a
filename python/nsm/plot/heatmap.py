"""Heatmaps of a :class:`nsm.CrossComparison`: one cell per (site of A, site of B).

matplotlib is imported when a figure is drawn, with the non-interactive Agg backend.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from ..measures import MEASURES, REGISTRY
from ._figures import finish, pyplot
from .labels import shorten_labels

__all__ = ["plot_heatmap", "write_cross_report"]

_TITLES = {
    **{m.name: m.title for m in REGISTRY.values()},
    "match_auc": "Area under the maximum-match similarity curve",
    "similarity": "Maximum-match similarity",
    "similarity_gap": "Maximum-match similarity minus the baseline's",
}


def _sizes(n_rows: int, n_cols: int) -> tuple[float, float, float]:
    """Cell size (inches) and tick font size (points) for a grid, figure kept under ~16 in."""
    n = max(n_rows, n_cols)
    cell = min(0.6, max(0.16, 12.0 / n))
    font = float(np.clip(cell * 40, 5.0, 9.0))
    return cell, font, font


def plot_heatmap(
    cross: Any, *, measure: str = "linear_cka", eps: float | None = None, path: Any = None
) -> Any:
    """Draw ``cross.matrix(measure, eps)`` as a heatmap: rows are the sites of A, columns those
    of B, with a colour bar. Labels drop the prefix all sites share (named in the axis title)
    and are rotated; cells that could not be compared or are undefined are hatched grey; the
    values are printed in the cells of grids up to 16 × 16.

    Parameters
    ----------
    cross : CrossComparison
    measure, eps
        As for :meth:`CrossComparison.matrix` (keywords).
    path : str or path, optional
        The image file to write (its suffix picks the format, e.g. .png, .pdf, .svg); None
        (the default) saves nothing.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np, nsm, tempfile, os
    >>> from nsm.results import CrossComparison
    >>> from nsm.plot.heatmap import plot_heatmap
    >>> X = np.random.default_rng(0).random((300, 4))
    >>> cc = CrossComparison(["a.x", "a.y"], ["b"], {("a.x", "b"): nsm.Gram.from_arrays(X, X),
    ...                                            ("a.y", "b"): nsm.Gram.from_arrays(X ** 2, X)})
    >>> path = os.path.join(tempfile.mkdtemp(), "cka.png")
    >>> fig = plot_heatmap(cc, measure="linear_cka", path=path)
    >>> type(fig).__name__, os.path.getsize(path) > 0
    ('Figure', True)
    """
    values = cross.matrix(measure, eps)
    plt = pyplot()
    n_rows, n_cols = values.shape
    cell, font, _ = _sizes(n_rows, n_cols)
    prefix_a, rows = shorten_labels(cross.sites_a)
    prefix_b, cols = shorten_labels(cross.sites_b)
    label_room = 0.075 * font / 7 * max(len(s) for s in rows + cols)  # inches for the tick labels
    fig, ax = plt.subplots(
        figsize=(max(5.0, n_cols * cell + label_room + 2.2), max(4.0, n_rows * cell + label_room + 1.4))
    )
    if measure == "similarity_gap":
        finite = np.abs(values[np.isfinite(values)])
        bound = max(0.05, float(finite.max())) if finite.size else 1.0
        cmap, vmin, vmax = plt.get_cmap("RdBu_r"), -bound, bound
    else:
        cmap, vmin, vmax = plt.get_cmap("viridis"), 0.0, 1.0
    cmap = cmap.with_extremes(bad=(0.0, 0.0, 0.0, 0.0))  # NaN cells show the hatched background
    ax.add_patch(
        plt.Rectangle(
            (-0.5, -0.5),
            n_cols,
            n_rows,
            facecolor="0.85",
            edgecolor="0.55",
            hatch="xx",
            linewidth=0,
            zorder=0,
        )
    )
    image = ax.imshow(
        np.ma.masked_invalid(values),
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        interpolation="nearest",
        aspect="equal",
        zorder=1,
    )
    ax.set_xlim(-0.5, n_cols - 0.5)
    ax.set_ylim(n_rows - 0.5, -0.5)
    ax.set_xticks(np.arange(n_cols), cols, rotation=90, fontsize=font)
    ax.set_yticks(np.arange(n_rows), rows, fontsize=font)
    ax.tick_params(length=2)
    ax.set_xlabel("sites of B" + (f" ({prefix_b}…)" if prefix_b else ""))
    ax.set_ylabel("sites of A" + (f" ({prefix_a}…)" if prefix_a else ""))
    if n_rows <= 16 and n_cols <= 16:
        for i in range(n_rows):
            for j in range(n_cols):
                v = values[i, j]
                if math.isfinite(v):
                    dark = (v - vmin) / (vmax - vmin) < 0.55 if measure != "similarity_gap" else False
                    ax.text(
                        j,
                        i,
                        f"{v:.2f}",
                        ha="center",
                        va="center",
                        fontsize=font * 0.9,
                        color="white" if dark else "black",
                    )
    bar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    bar.set_label(measure if eps is None else f"{measure} at ε = {eps:g}")
    title = _TITLES.get(measure, measure) + ("" if eps is None else f", ε = {eps:g}")
    if np.isnan(values).any():
        title += "\n(hatched: not compared, or undefined)"
    ax.set_title(title, fontsize=10)
    return finish(plt, fig, path)


def write_cross_report(cross: Any, out_dir: Any) -> list[str]:
    """Write ``cross.json``, ``cross.csv`` and a heatmap per measure into ``out_dir`` (created
    if needed): ``heatmap_<measure>.png`` for each measure of :mod:`nsm.measures`, and
    ``heatmap_similarity_<ε>.png`` (and ``heatmap_similarity_gap_<ε>.png`` when there are
    baselines) for each of the comparison's ε. Returns the paths written.

    Examples
    --------
    >>> import numpy as np, nsm, tempfile, os
    >>> from nsm.results import CrossComparison
    >>> from nsm.plot.heatmap import write_cross_report
    >>> X = np.random.default_rng(0).random((300, 4))
    >>> cc = CrossComparison(["a"], ["b"], {("a", "b"): nsm.Gram.from_arrays(X, X)}, eps=[0.3])
    >>> [os.path.basename(p) for p in write_cross_report(cc, tempfile.mkdtemp())][:3]
    ['cross.json', 'cross.csv', 'heatmap_linear_cka.png']
    """
    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, "cross.json"), os.path.join(out_dir, "cross.csv")]
    cross.save(paths[0])
    cross.to_csv(paths[1])
    figures: list[tuple[str, str, float | None]] = [(f"heatmap_{m}.png", m, None) for m in MEASURES]
    for e in cross.eps:
        figures.append((f"heatmap_similarity_{e:g}.png", "similarity", e))
        if not np.isnan(cross.matrix("similarity_gap", e)).all():
            figures.append((f"heatmap_similarity_gap_{e:g}.png", "similarity_gap", e))
    for name, measure, e in figures:
        path = os.path.join(out_dir, name)
        plot_heatmap(cross, measure=measure, eps=e, path=path)
        paths.append(path)
    return paths
