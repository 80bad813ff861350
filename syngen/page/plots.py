"""Plots for the report page, drawn with matplotlib and returned as inline SVG.

Figures are made with :class:`matplotlib.figure.Figure` directly (no pyplot: no global state, no GUI backend);
text stays text in the SVG (``svg.fonttype: none``), which keeps each plot a few kB.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure

SIZE = (4.2, 2.8)  # inches


def svg(figure: Figure) -> str:
    """``figure`` as an ``<svg>`` element (the XML header dropped so it can sit inside HTML)."""
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "syngen"}):
        # no metadata: no date (the same data gives the same page) and no RDF block
        figure.savefig(
            buf, format="svg", bbox_inches="tight", metadata=dict.fromkeys(("Creator", "Date", "Format", "Type"))
        )
    text = buf.getvalue()
    return text[text.index("<svg") :]


def histogram(series: Mapping[str, Sequence[float]], title: str, xlabel: str, bins: int = 20) -> str:
    """Overlaid histograms of each named series (a legend when there are several); "no values" when all are
    empty."""
    figure, axes = _axes(title, xlabel, "count")
    filled = {name: list(values) for name, values in series.items() if len(values)}
    if not filled:
        return _empty(figure, axes)
    low = min(min(v) for v in filled.values())
    high = max(max(v) for v in filled.values())
    if high == low:  # one value: a bar around it, not a range of width 0
        low, high = low - 0.05 * (abs(low) or 1), high + 0.05 * (abs(high) or 1)
    for name, values in filled.items():
        axes.hist(values, bins=bins, range=(low, high), alpha=0.6, label=name)
    if len(filled) > 1:
        axes.legend(fontsize=8)
    return svg(figure)


def bars(counts: Mapping[int, int], title: str, xlabel: str) -> str:
    """A bar per integer value (e.g. regions per image) with its count."""
    figure, axes = _axes(title, xlabel, "images")
    if not counts:
        return _empty(figure, axes)
    axes.bar(list(counts), list(counts.values()), color="#0082c8")
    axes.set_xticks(list(counts))
    return svg(figure)


def curves(series: Mapping[str, Sequence[tuple[float, float]]], title: str, xlabel: str = "step") -> str:
    """Lines of (x, y) points, one per named series, with markers where a series has few points."""
    figure, axes = _axes(title, xlabel, "")
    if not any(series.values()):
        return _empty(figure, axes)
    for name, points in series.items():
        xs, ys = zip(*points, strict=True) if points else ((), ())
        axes.plot(xs, ys, marker="o" if len(points) < 20 else None, markersize=3, label=name)
    if len(series) > 1:
        axes.legend(fontsize=8)
    return svg(figure)


def _axes(title: str, xlabel: str, ylabel: str) -> tuple[Figure, Axes]:
    figure = Figure(figsize=SIZE)
    axes = figure.add_subplot()
    axes.set_title(title, fontsize=10)
    axes.set_xlabel(xlabel, fontsize=9)
    axes.set_ylabel(ylabel, fontsize=9)
    axes.tick_params(labelsize=8)
    return figure, axes


def _empty(figure: Figure, axes: Axes) -> str:
    axes.text(0.5, 0.5, "no values", ha="center", va="center", transform=axes.transAxes)
    axes.set_xticks([])
    axes.set_yticks([])
    return svg(figure)
