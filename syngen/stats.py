"""Statistics of an exported dataset and its run, for `syngen inspect`.

:func:`summarize` reads ``<out>/dataset`` (parquet, a batch at a time, image columns left unread) and
``<out>/run.json``; :func:`format_summary` renders the result as rich tables. :func:`read_rows` is the reader
the contact sheets share.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from rich.console import Group
from rich.table import Table

from syngen.masks import box_area

EXAMPLES = 3  # seed items shown per failure reason
QUANTILES = {"min": 0.0, "p10": 0.1, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p90": 0.9, "max": 1.0}


def config_dir(dataset_dir: Path, config: str) -> Path:
    """Where a config's parquet shards live in the Hub layout: ``<dataset_dir>/data/<config>/``."""
    return Path(dataset_dir) / "data" / config


def stage_counts(stage: dict[str, Any]) -> dict[str, int]:
    """A run report stage's {"in", "out", "failed"}."""
    return {"in": stage["items_in"], "out": stage["items_out"], "failed": stage["failed"]}


def read_rows(
    dataset_dir: Path, config: str, columns: list[str], limit: int | None = None, batch_size: int = 256
) -> Iterator[dict[str, Any]]:
    """Rows of a config as dicts holding only ``columns`` (Image cells as {"bytes", "path"}; None for a column the
    dataset does not have: the stage that publishes it did not run), shard by shard, stopping after ``limit``
    rows. A config that was not exported yields nothing."""
    if limit is not None and limit <= 0:
        return
    count = 0
    for shard in sorted(config_dir(dataset_dir, config).glob("*.parquet")):
        parquet = pq.ParquetFile(shard)
        present = [name for name in columns if name in parquet.schema_arrow.names]
        for batch in parquet.iter_batches(batch_size=batch_size, columns=present):
            for row in batch.to_pylist():
                yield dict.fromkeys(columns) | row
                count += 1
                if count == limit:
                    return


def distributions(dataset_dir: Path) -> dict[str, Any]:
    """The raw values the statistics are made of, read from ``dataset_dir`` a batch at a time: {"regions_per_image",
    "phrases_per_caption" (one int per image), "box_score", "mask_score" (one float per scored region),
    "box_area" (each box's share of its image's area), "iou_by_kind" ({negative kind: [pair IoU]})}."""
    values: dict[str, Any] = {
        "regions_per_image": [],
        "phrases_per_caption": [],
        "box_score": [],
        "mask_score": [],
        "box_area": [],
    }
    for row in read_rows(dataset_dir, "grounding", ["phrases", "regions", "width", "height"]):
        regions = row["regions"] or []
        values["regions_per_image"].append(len(regions))
        values["phrases_per_caption"].append(len(row["phrases"] or []))
        values["box_score"] += [r["box_score"] for r in regions if r.get("box_score") is not None]
        values["mask_score"] += [r["mask_score"] for r in regions if r.get("mask_score") is not None]
        if row["width"] and row["height"]:
            values["box_area"] += [box_area(r["box"]) / (row["width"] * row["height"]) for r in regions]
    iou_by_kind: dict[str, list[float]] = {}
    for row in read_rows(dataset_dir, "preference", ["kind", "iou"]):
        iou_by_kind.setdefault(row["kind"], []).append(row["iou"])
    values["iou_by_kind"] = dict(sorted(iou_by_kind.items()))
    return values


def summarize(out_dir: Path, values: dict[str, Any] | None = None) -> dict[str, Any]:
    """Counts and distributions of ``<out_dir>/dataset`` (its :func:`distributions`, read unless ``values`` are
    given) plus the failures recorded in ``<out_dir>/run.json``.

    Returns {"images", "regions": {"total", "per_image"}, "phrases_per_caption", "box_score", "mask_score",
    "box_area", "preference": {"pairs", "by_kind", "iou", "iou_by_kind"}, "stages": {stage: {"in", "out",
    "failed"}}, "failures": {stage: {kind: n}}, "filtered": {stage: {reason: n}}} (regions dropped by the quality
    filters, from the run's ``filtered_<reason>`` counters), "reasons": [{"stage", "kind", "count", "items",
    "message"}] (from ``failures.jsonl``, most common first, with the first few seed items and one message)};
    counts as {"mean", "min", "max", "histogram"}, scores as {"n", "mean", "min", "p10", ..., "max"} (None where
    there is nothing to measure).
    """
    values = distributions(Path(out_dir) / "dataset") if values is None else values
    per_kind = values["iou_by_kind"]
    run_file = Path(out_dir) / "run.json"
    stages = json.loads(run_file.read_text())["stages"] if run_file.is_file() else {}
    return {
        "images": len(values["regions_per_image"]),
        "regions": {"total": sum(values["regions_per_image"]), "per_image": _counts(values["regions_per_image"])},
        "phrases_per_caption": _counts(values["phrases_per_caption"]),
        "box_score": _quantiles(values["box_score"]),
        "mask_score": _quantiles(values["mask_score"]),
        "box_area": _quantiles(values["box_area"]),
        "preference": {
            "pairs": sum(len(ious) for ious in per_kind.values()),
            "by_kind": {kind: len(ious) for kind, ious in per_kind.items()},
            "iou": _quantiles([iou for ious in per_kind.values() for iou in ious]),
            "iou_by_kind": {kind: _quantiles(ious) for kind, ious in per_kind.items()},
        },
        "stages": {name: stage_counts(s) for name, s in stages.items()},
        "failures": {name: dict(s["failures"]) for name, s in stages.items() if s.get("failures")},
        "filtered": {name: found for name, s in stages.items() if (found := _filtered(s.get("stats") or {}))},
        "reasons": failure_reasons(Path(out_dir) / "failures.jsonl"),
    }


def _filtered(stats: dict[str, Any]) -> dict[str, int]:
    """The non-zero ``filtered_<reason>`` counters of a stage, by reason."""
    return {key.removeprefix("filtered_"): n for key, n in stats.items() if key.startswith("filtered_") and n}


def failure_reasons(path: Path) -> list[dict[str, Any]]:
    """The failures in a ``failures.jsonl`` grouped by (stage, kind), most common first: {"stage", "kind",
    "count", "items" (the first few seed items), "message" (the first one)}. Read line by line."""
    reasons: dict[tuple[str, str], dict[str, Any]] = {}
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            failure = json.loads(line)
            key = (failure["stage"], failure["kind"])
            reason = reasons.setdefault(key, {"stage": key[0], "kind": key[1], "count": 0, "items": []})
            reason["count"] += 1
            reason.setdefault("message", failure["message"])
            if len(reason["items"]) < EXAMPLES:
                reason["items"].append(failure["item"])
    return sorted(reasons.values(), key=lambda r: -r["count"])


def format_summary(summary: dict[str, Any]) -> Group:
    """The summary as rich tables: overview, score distributions, preference kinds, stage counts, failures and
    regions dropped by the quality filters."""
    overview = Table("measure", "value", title="Dataset")
    per_image, per_caption = summary["regions"]["per_image"], summary["phrases_per_caption"]
    overview.add_row("images", str(summary["images"]))
    overview.add_row("regions", str(summary["regions"]["total"]))
    overview.add_row("regions per image (mean / min / max)", _mean_min_max(per_image))
    overview.add_row("regions per image histogram", _histogram(per_image["histogram"]))
    overview.add_row("phrases per caption (mean / min / max)", _mean_min_max(per_caption))
    overview.add_row("preference pairs", str(summary["preference"]["pairs"]))
    overview.add_row("pairs by kind", _histogram(summary["preference"]["by_kind"]))

    scores = Table("score", "n", "mean", *QUANTILES, title="Distributions")
    for name, values in score_rows(summary):
        scores.add_row(name, str(values["n"]), *(_number(values[k]) for k in ["mean", *QUANTILES]))

    stages = Table("stage", "in", "out", "failed", "failures", "regions filtered", title="Run")
    for name, counts in summary["stages"].items():
        failures = _histogram(summary["failures"].get(name, {}))
        filtered = _histogram(summary["filtered"].get(name, {}))
        stages.add_row(name, *(str(counts[k]) for k in ("in", "out", "failed")), failures, filtered)
    reasons = Table("stage", "kind", "count", "example items", "message", title="Failures (failures.jsonl)")
    for reason in summary["reasons"]:
        items = ", ".join(str(item) for item in reason["items"]) + (", ..." if reason["count"] > EXAMPLES else "")
        reasons.add_row(reason["stage"], reason["kind"], str(reason["count"]), items, reason["message"])
    return Group(overview, scores, stages, *([reasons] if summary["reasons"] else []))


def score_rows(summary: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(name, quantiles) of each score distribution in a :func:`summarize` result, for the tables."""
    kinds = summary["preference"]["iou_by_kind"]
    return [
        ("box score", summary["box_score"]),
        ("mask score", summary["mask_score"]),
        ("box area (share of image)", summary["box_area"]),
        ("pair IoU", summary["preference"]["iou"]),
        *((f"pair IoU ({kind})", quantiles) for kind, quantiles in kinds.items()),
    ]


def _counts(values: list[int]) -> dict[str, Any]:
    if not values:
        return {"mean": None, "min": None, "max": None, "histogram": {}}
    return {
        "mean": float(np.mean(values)),
        "min": min(values),
        "max": max(values),
        "histogram": dict(sorted(Counter(values).items())),
    }


def _quantiles(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "mean": None, **{name: None for name in QUANTILES}}
    array = np.asarray(values, dtype=np.float64)
    return {
        "n": len(values),
        "mean": float(array.mean()),
        **{name: float(np.quantile(array, q)) for name, q in QUANTILES.items()},
    }


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _mean_min_max(counts: dict[str, Any]) -> str:
    low, high = ("-" if counts[k] is None else str(counts[k]) for k in ("min", "max"))
    return f"{_number(counts['mean'])} / {low} / {high}"


def _histogram(histogram: dict[Any, int]) -> str:
    return ", ".join(f"{key}: {n}" for key, n in histogram.items()) or "-"
