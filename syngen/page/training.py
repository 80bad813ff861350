"""The page of a training output folder: its curves (``metrics.jsonl``) and the eval metrics over steps.

Eval reports are the ``eval-*.json`` files `syngen eval` writes into a model folder: the output folder itself
(the final model, at the step of its ``trainer_state.json``) and each ``checkpoint-<step>/``. Every number under a
report's ``metrics`` (nested keys joined with ``/``) becomes a series over steps.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from syngen.page import plots
from syngen.page.html import document, esc, table
from syngen.train.checkpoint import checkpoints, read_state

SKIP = {"step", "epoch"}


def training_page(out: Path) -> str:
    """The HTML page of the training run in ``out``."""
    out = Path(out)
    state = read_state(out) if (out / "trainer_state.json").is_file() else {}
    records = list(_metrics(out / "metrics.jsonl"))
    evals = eval_series(out)
    title = f"syngen train {state.get('objective', '')} {out.name}".replace("  ", " ")
    sections = [
        ("summary", "Summary", _summary(state, records)),
        ("curves", "Training curves", _curves(records)),
        ("eval", "Eval metrics over steps", _evals(evals)),
    ]
    return document(title, sections)


def _metrics(path: Path) -> Iterator[dict[str, Any]]:
    """The records of ``metrics.jsonl``; a line cut off by a kill is skipped."""
    if not path.is_file():
        return
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def _summary(state: dict[str, Any], records: list[dict[str, Any]]) -> str:
    rows = [[key, str(value)] for key, value in state.items()]
    if records:
        last = records[-1]
        rows += [[f"last {key}", _value(value)] for key, value in last.items() if key not in SKIP]
    return table("summary-table", ("measure", "value"), rows) if rows else "<p class=empty>nothing recorded</p>"


def _curves(records: list[dict[str, Any]]) -> str:
    series: dict[str, list[tuple[float, float]]] = {}
    for record in records:
        for key, value in record.items():
            if key not in SKIP and _finite(value):
                series.setdefault(key, []).append((record["step"], float(value)))
    if not series:
        return "<p class=empty>no metrics.jsonl records</p>"
    figures = [plots.curves({key: points}, key) for key, points in series.items()]
    return "<div class=plots>" + "".join(f"<figure>{f}</figure>" for f in figures) + "</div>"


def eval_series(out: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """{report name (``eval-<task>-<data>[-<split>]``): {metric: [(step, value)]}} from the eval reports in ``out``
    and its checkpoints, by step."""
    folders = [*checkpoints(out), out] if (out / "trainer_state.json").is_file() else checkpoints(out)
    found: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for folder in folders:
        step = int(read_state(folder).get("step", 0))
        # pointing writes eval-<task>-<data>-<split>.json; ris writes eval-ris-<data>/report.json
        for path in sorted([*folder.glob("eval-*.json"), *folder.glob("eval-*/report.json")]):
            name = path.parent.name if path.name == "report.json" else path.stem
            try:
                metrics = json.loads(path.read_text(encoding="utf-8")).get("metrics", {})
            except (json.JSONDecodeError, AttributeError):
                continue  # not an eval report
            for key, value in _flatten(metrics):
                found.setdefault(name, {}).setdefault(key, []).append((step, value))
    return found


def _evals(evals: dict[str, dict[str, list[tuple[int, float]]]]) -> str:
    if not evals:
        return (
            "<p class=empty>no eval reports: score checkpoints with <code>syngen eval ris --model "
            "OUT/checkpoint-N</code> and they appear here</p>"
        )
    parts = []
    for name, metrics in evals.items():
        steps = sorted({step for points in metrics.values() for step, _ in points})
        rows = [[step, *(_at(metrics[key], step) for key in metrics)] for step in steps]
        parts.append(f"<h3>{esc(name)}</h3>" + table(f"eval-{name}", ("step", *metrics), rows))
        figures = [plots.curves({key: points}, f"{name}: {key}") for key, points in metrics.items()]
        parts.append("<div class=plots>" + "".join(f"<figure>{f}</figure>" for f in figures) + "</div>")
    return "".join(parts)


def _flatten(metrics: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    """(key path, value) of every finite number in a nested dict."""
    if isinstance(metrics, dict):
        for key, value in metrics.items():
            yield from _flatten(value, f"{prefix}{key}" if not prefix else f"{prefix}/{key}")
    elif _finite(metrics):
        yield prefix, float(metrics)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _at(points: list[tuple[int, float]], step: int) -> str:
    return next((f"{value:.4g}" for s, value in points if s == step), "-")


def _value(value: Any) -> str:
    return f"{value:.4g}" if _finite(value) else str(value)
