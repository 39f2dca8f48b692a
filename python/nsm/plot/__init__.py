"""Figures of the results: every function returns its matplotlib Figure and saves it only when
given ``path=`` (the suffix picks the format). matplotlib is imported when a figure is drawn,
with the non-interactive Agg backend.

- :func:`plot_similarity`, :func:`plot_curves`, :func:`plot_thresholds`: a layer-by-layer
  :class:`nsm.Comparison`; :func:`write_report` writes ``report.json`` and the three of them.
- :func:`plot_heatmap`: one measure of a :class:`nsm.CrossComparison`;
  :func:`write_cross_report` writes every measure's heatmap, ``cross.json`` and ``cross.csv``.
"""

from __future__ import annotations

from .heatmap import plot_heatmap, write_cross_report
from .report import (
    DEMO_FILES,
    FIGURES,
    REPORT_FILES,
    plot_curves,
    plot_similarity,
    plot_thresholds,
    write_report,
)

__all__ = [
    "DEMO_FILES",
    "FIGURES",
    "REPORT_FILES",
    "plot_curves",
    "plot_heatmap",
    "plot_similarity",
    "plot_thresholds",
    "write_cross_report",
    "write_report",
]
