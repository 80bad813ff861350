"""``curves.png``: a run's losses, DPO rewards and evaluation metrics against optimizer steps (matplotlib).

Input is a log history (``trainer_state.json``'s ``log_history``: records ``{"step", "epoch", <metric>: value}``).
One panel per family that the history holds: ``loss`` and ``loss/...``; ``rewards/...``; ``eval/...``. Values that
are not finite numbers (logged as strings) are left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

PANELS: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("losses", lambda key: key == "loss" or key.startswith("loss/")),
    ("rewards", lambda key: key.startswith("rewards/")),
    ("evaluation", lambda key: key.startswith("eval/")),
)


def series(history: Sequence[dict[str, Any]]) -> dict[str, tuple[list[int], list[float]]]:
    """Metric name -> (steps, values), in history order, finite numbers only."""
    out: dict[str, tuple[list[int], list[float]]] = {}
    for record in history:
        for key, value in record.items():
            if key in ("step", "epoch") or not isinstance(value, int | float) or not math.isfinite(value):
                continue
            steps, values = out.setdefault(key, ([], []))
            steps.append(int(record["step"]))
            values.append(float(value))
    return out


def panels(names: Iterable[str]) -> list[tuple[str, list[str]]]:
    """(panel title, metric names) for each panel that some of ``names`` belong to, in :data:`PANELS` order."""
    found = [(title, sorted(n for n in names if wanted(n))) for title, wanted in PANELS]
    return [(title, keys) for title, keys in found if keys]


def plot_curves(history: Sequence[dict[str, Any]], path: Path, title: str = "") -> Path | None:
    """Draws ``history``'s panels into the PNG ``path``; returns it, or None when there is nothing to draw."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    found = series(history)
    drawn = panels(found)
    if not drawn:
        return None
    figure = Figure(figsize=(4.2 * len(drawn), 3.2), layout="constrained")
    for axes, (name, keys) in zip(figure.subplots(1, len(drawn), squeeze=False)[0], drawn, strict=True):
        for key in keys:
            steps, values = found[key]
            axes.plot(steps, values, marker="o" if len(steps) < 12 else None, markersize=3, label=key)
        axes.set_title(name)
        if name == "evaluation":  # IoUs and accuracies: the whole range, so runs compare at a glance
            axes.set_ylim(-0.02, 1.02)
        axes.set_xlabel("optimizer step")
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    if title:
        figure.suptitle(title)
    path = Path(path)
    figure.savefig(path, dpi=90)
    return path
