"""The page of a run's output folder: run report, statistics, failures, distributions, samples and pairs.

Reads ``<out>/run.json``, ``<out>/failures.jsonl`` and ``<out>/dataset`` (the statistics stream every row; only
the first ``n`` samples and pairs are drawn, so the page's size does not grow with the dataset).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from syngen.masks import decode_rle
from syngen.page import plots
from syngen.page.html import attr, data_uri, document, esc, number, table
from syngen.stats import EXAMPLES, QUANTILES, distributions, read_rows, score_rows, summarize
from syngen.viz import (
    BOTH,
    CHOSEN,
    PAIR_COLUMNS,
    PALETTE,
    REJECTED,
    decode_image,
    draw_difference,
    draw_overlay,
    pair_images,
)

STAGE_COLUMNS = ("stage", "in", "out", "failed", "new", "wall s", "loads", "load s", "model s", "it/s", "peak MB")


def run_page(out: Path, n: int = 16) -> str:
    """The HTML page of the run in ``out`` with its first ``n`` samples and ``n`` preference pairs drawn."""
    out = Path(out)
    report = _run_report(out)
    values = distributions(out / "dataset")
    summary = summarize(out, values)
    title = f"syngen run {report.get('recipe', out.name)}"
    sections = [
        ("run", "Run report", _run_section(report, summary)),
        ("statistics", "Statistics", _statistics_section(summary)),
        ("failures", "Failures", _failures_section(summary)),
        ("distributions", "Distributions", _distributions_section(values)),
        ("samples", "Samples", _samples_section(out / "dataset", n)),
        ("pairs", "Preference pairs", _pairs_section(out / "dataset", n, summary)),
    ]
    return document(title, sections)


def _run_report(out: Path) -> dict[str, Any]:
    path = out / "run.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _run_section(report: dict[str, Any], summary: dict[str, Any]) -> str:
    if not report:
        return "<p class=empty>no run.json in this folder: the dataset was made elsewhere</p>"
    head = (
        f"<p>recipe <b>{esc(str(report.get('recipe', '?')))}</b> on {esc(str(report.get('device', '?')))}"
        f" ({esc(str(report.get('dtype', '')))}), {number(report.get('total_s'), 1)} s in all</p>"
    )
    rows = [
        [
            name,
            s["items_in"],
            s["items_out"],
            s["failed"],
            s.get("computed", 0),
            number(s.get("wall_s"), 2),
            s.get("loads", 0),
            number(s.get("load_s"), 2),
            number(s.get("model_s"), 2),
            number(s.get("items_per_s"), 1),
            number(s.get("peak_mem_mb"), 0),
        ]
        for name, s in report.get("stages", {}).items()
    ]
    parts = [head, table("stages", STAGE_COLUMNS, rows)]
    if loads := report.get("model_loads"):
        parts.append(table("model-loads", ("model", "loads"), [[m, k] for m, k in loads.items()]))
    filtered = [[stage, reason, k] for stage, found in summary["filtered"].items() for reason, k in found.items()]
    parts.append("<h3>Regions dropped by the quality filters</h3>")
    parts.append(table("filters", ("stage", "filter", "regions"), filtered) if filtered else _empty("none"))
    if skipped := report.get("skipped"):
        parts.append(f"<h3>Skipped files ({len(skipped)})</h3>")
        parts.append(table("skipped", ("file", "why"), [[path, why] for path, why in skipped.items()]))
    return "".join(parts)


def _statistics_section(summary: dict[str, Any]) -> str:
    per_image, per_caption = summary["regions"]["per_image"], summary["phrases_per_caption"]
    preference = summary["preference"]
    rows = [
        ["images", summary["images"]],
        ["regions", summary["regions"]["total"]],
        ["regions per image (mean)", number(per_image["mean"], 2)],
        ["phrases per caption (mean)", number(per_caption["mean"], 2)],
        ["preference pairs", preference["pairs"]],
        *([f"pairs ({kind})", count] for kind, count in preference["by_kind"].items()),
    ]
    scores = [[name, q["n"], *(number(q[k]) for k in ["mean", *QUANTILES])] for name, q in score_rows(summary)]
    return table("statistics-table", ("measure", "value"), rows) + table(
        "scores", ("distribution", "n", "mean", *QUANTILES), scores
    )


def _failures_section(summary: dict[str, Any]) -> str:
    reasons = summary["reasons"]
    options = "".join(
        f"<option value='{attr(key)}'>{esc(key)} ({r['count']})</option>"
        for r in reasons
        if (key := f"{r['stage']}/{r['kind']}")
    )
    picker = (
        "<div class=filters><label>failure reason <select id=reason><option value=''>all</option>"
        f"{options}</select></label> <span id=failures-shown>{len(reasons)}</span> of {len(reasons)} reasons</div>"
    )
    rows = [
        [
            r["stage"],
            r["kind"],
            r["count"],
            ", ".join(str(item) for item in r["items"]) + (", ..." if r["count"] > EXAMPLES else ""),
            r["message"],
        ]
        for r in reasons
    ]
    attrs = [f"data-reason='{attr(r['stage'] + '/' + r['kind'])}'" for r in reasons]
    total = sum(r["count"] for r in reasons)
    note = f"<p>{total} failed samples (from failures.jsonl), by stage and reason, with example seed items</p>"
    if not reasons:
        note = "<p>no sample failed</p>"
    return note + picker + table("failures", ("stage", "reason", "count", "examples", "message"), rows, attrs)


def _distributions_section(values: dict[str, Any]) -> str:
    figures = [
        plots.bars(_histogram(values["regions_per_image"]), "regions per image", "regions"),
        plots.bars(_histogram(values["phrases_per_caption"]), "phrases per caption", "phrases"),
        plots.histogram({"boxes": values["box_area"]}, "box area", "share of the image"),
        plots.histogram({"box": values["box_score"], "mask": values["mask_score"]}, "scores", "score"),
        plots.histogram(values["iou_by_kind"], "negative IoU with the chosen mask, per kind", "IoU"),
    ]
    return "<div class=plots>" + "".join(f"<figure>{f}</figure>" for f in figures) + "</div>"


def _histogram(values: list[int]) -> dict[int, int]:
    found, counts = np.unique(np.asarray(values, dtype=np.int64), return_counts=True)
    return {int(v): int(c) for v, c in zip(found, counts, strict=True)}


def _samples_section(dataset_dir: Path, n: int) -> str:
    cards = []
    for i, row in enumerate(read_rows(dataset_dir, "grounding", ["id", "image", "caption", "regions"], limit=n)):
        regions = row["regions"] or []
        if row["image"] is None:
            continue
        drawn = draw_overlay(decode_image(row["image"]), regions)
        chips = "".join(
            f"<span class=chip style='background:rgb{PALETTE[k % len(PALETTE)]}'>{esc(r.get('phrase') or '')}</span>"
            for k, r in enumerate(regions)
        )
        caption = row["caption"] or ""
        cards.append(
            f"<figure class='card sample'><img class=zoom src='{data_uri(drawn)}' alt='sample {i}' "
            f"data-caption='{attr(caption)}'><figcaption><span class=id>#{i} {esc(row['id'])}</span><br>"
            f"{esc(caption)}<br>{chips or _empty('no regions')}</figcaption></figure>"
        )
    shown = f"<p>the first {len(cards)} samples; click an image to enlarge it</p>"
    return shown + (f"<div class=grid>{''.join(cards)}</div>" if cards else _empty("no samples"))


def _pairs_section(dataset_dir: Path, n: int, summary: dict[str, Any]) -> str:
    pairs = list(read_rows(dataset_dir, "preference", PAIR_COLUMNS, limit=n))
    images = pair_images(dataset_dir, {row["image_id"] for row in pairs})
    kinds = sorted({row["kind"] for row in pairs} | set(summary["preference"]["by_kind"]))
    boxes = "".join(
        f"<label><input type=checkbox class=kind value='{attr(k)}' checked> {esc(k)}</label>" for k in kinds
    )
    filters = (
        f"<div class=filters>{boxes}<label>IoU from <input type=number id=iou-min value=0 min=0 max=1 step=0.05>"
        " to <input type=number id=iou-max value=1 min=0 max=1 step=0.05></label>"
        f"<span id=pairs-shown>{len(pairs)}</span> of {len(pairs)} pairs shown</div>"
    )
    legend = "".join(
        f"<span class=swatch style='background:rgb{colour}'></span>{name}"
        for name, colour in (("chosen only", CHOSEN), ("rejected only", REJECTED), ("both", BOTH))
    )
    cards = []
    for i, row in enumerate(pairs):
        if row["image_id"] not in images:
            continue
        chosen, rejected = decode_rle(row["chosen"]), decode_rle(row["rejected"])
        counts = [int((chosen & ~rejected).sum()), int((rejected & ~chosen).sum()), int((chosen & rejected).sum())]
        text = f"{row['prompt']}: {row['kind']}, IoU {row['iou']:.3f}"
        cards.append(
            f"<figure class='card pair' data-kind='{attr(row['kind'])}' data-iou='{row['iou']:.6f}'>"
            f"<img class=zoom src='{data_uri(draw_difference(images[row['image_id']], row))}' alt='pair {i}' "
            f"data-caption='{attr(text)}'><figcaption><span class=id>#{i} {esc(row['id'])}</span><br>"
            f"<b>{esc(row['prompt'])}</b><br>{esc(row['kind'])}, IoU {row['iou']:.3f}<br>pixels: chosen only "
            f"{counts[0]}, rejected only {counts[1]}, both {counts[2]}</figcaption></figure>"
        )
    note = f"<p>the first {len(cards)} of {summary['preference']['pairs']} pairs; colours: {legend}</p>"
    return note + filters + (f"<div class=grid>{''.join(cards)}</div>" if cards else _empty("no pairs"))


def _empty(text: str) -> str:
    return f"<p class=empty>{esc(text)}</p>"
