"""Scoring checkpoints: ``syngen eval ris`` (referring segmentation) and ``syngen eval pointing`` (the pointing
game of an image-text matching model's Grad-CAM), with :mod:`syngen.metrics`.

Data for ``ris``: a syngen dataset's ``grounding`` config (each region's phrase and mask), or a RefCOCO-style
table: a Hugging Face dataset folder (``save_to_disk`` or Hub layout), parquet files, or a Hub id, with an image
column, an expression column (a string, or a list of sentences: strings or dicts with ``sent``/``raw``) and a
mask column (COCO RLE ``{"size", "counts"}`` or polygons ``[[x1, y1, x2, y2, ...], ...]``). Every sentence is
one expression. Nothing is unpickled.

Data for ``pointing``: the same, with boxes: a syngen ``grounding`` config's regions (a phrase with several boxes
on one image is one query, a hit in any box counts), or a RefCOCO-style table whose box column holds COCO
``[x, y, width, height]`` (without that column, the box around the mask column's mask).
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from syngen.data import read_dataset, read_parquet
from syngen.errors import DatasetError
from syngen.masks import decode_rle, rle_problem
from syngen.metrics import intersection_union, pointing_accuracy, pointing_hit, ris_metrics, upsample
from syngen.train.data import NAN_BOXES, checked_mask, dataset_path, load_split
from syngen.train.policy import EmbeddingCache, TextPromptableSam, image_key, image_masks


def is_syngen(spec: str) -> bool:
    """True for a syngen output or dataset folder with a ``grounding`` config."""
    return (Path(dataset_path(spec)) / "data" / "grounding").is_dir()


def load_table(spec: str, split: str) -> datasets.Dataset:
    """A RefCOCO-style table: parquet file(s) (a file, a glob or a folder of them), a ``save_to_disk`` folder,
    or a Hub-layout folder / Hub id; ``split`` picks the split where there are several."""
    path = Path(spec)
    files = [str(path)] if path.suffix == ".parquet" else sorted(map(str, path.glob("*.parquet")))
    if "*" in spec:
        files = [spec]
    if files:
        return read_parquet(files)
    if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
        loaded = datasets.load_from_disk(str(path))  # arrow files read in place: no cache to go stale
        return loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
    return read_dataset(spec, split=split)


def sentences(value: Any) -> list[str]:
    """The expressions in a text cell: a string, or a list of strings or of dicts with ``sent``/``raw``."""
    if isinstance(value, str):
        return [value]
    out = []
    for item in value or []:
        text = item if isinstance(item, str) else (item.get("sent") or item.get("raw") if item else None)
        if text:
            out.append(text)
    return out


def to_mask(value: Any, height: int, width: int) -> np.ndarray:
    """A (H, W) bool mask from COCO RLE (compressed or not) or polygons (a list of [x, y, ...] lists, or one);
    raises ValueError for RLE of another size than the image's, or garbage."""
    if isinstance(value, dict):
        problem = rle_problem(value, height, width)
        if problem:
            raise ValueError(problem)
        if isinstance(value.get("counts"), list):  # uncompressed RLE
            value = mask_utils.frPyObjects(value, *value["size"])
            return mask_utils.decode(value).astype(bool)
        return decode_rle(value)
    polygons = value if value and isinstance(value[0], list | tuple) else [value]
    polygons = [list(map(float, p)) for p in polygons if len(p) >= 6]
    if not polygons:
        return np.zeros((height, width), bool)
    rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    return mask_utils.decode(rle).astype(bool)


def ris_examples(
    spec: str, split: str, image_column: str, text_column: str, mask_column: str
) -> Iterator[dict[str, Any]]:
    """``{"key", "image", "phrase", "mask"}`` per expression of the dataset (see the module docstring)."""
    if is_syngen(spec):
        rows = load_split(spec, "grounding", split).select_columns(["id", "image", "regions"])
        for row in rows:
            image = row["image"].convert("RGB")
            for i, region in enumerate(row["regions"] or []):
                if region.get("mask") and region.get("phrase"):
                    where = f"{spec}: grounding row {row['id']!r}, region {i}"
                    yield {
                        "key": row["id"],
                        "image": image,
                        "phrase": region["phrase"],
                        "mask": checked_mask(region["mask"], image, where),
                    }
        return
    table = load_table(spec, split)
    missing = [c for c in (image_column, text_column, mask_column) if c not in table.column_names]
    if missing:
        raise DatasetError(f"{spec}: no column {', '.join(missing)}; columns: {', '.join(table.column_names)}")
    for i, row in enumerate(table.select_columns([image_column, text_column, mask_column])):
        image = row[image_column]
        image = (image if isinstance(image, Image.Image) else Image.open(image)).convert("RGB")
        try:
            mask = to_mask(row[mask_column], image.height, image.width)
        except ValueError as err:
            raise DatasetError(f"{spec}: row {i}, column {mask_column!r}: {err}") from None
        for text in sentences(row[text_column]):
            yield {"key": f"row{i}", "image": image, "phrase": text, "mask": mask}


@torch.no_grad()
def evaluate_ris(
    model: str,
    data: str,
    split: str = "train",
    *,
    image_column: str = "image",
    text_column: str = "sentences",
    mask_column: str = "segmentation",
    batch_size: int = 8,
    limit: int | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Scores the policy checkpoint ``model`` on ``data``; returns ``{"model", "data", "split", "metrics"}``."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    policy = TextPromptableSam.load(model, device).eval()
    cache = EmbeddingCache(limit=max(2 * batch_size, 16))
    intersections: list[int] = []
    unions: list[int] = []
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        keys = [image_key(ex["key"], ex["image"]) for ex in batch]
        embeddings = cache.embeddings(policy, [ex["image"] for ex in batch], keys)
        tokens = {k: v.to(device) for k, v in policy.tokenize([ex["phrase"] for ex in batch]).items()}
        logits, _ = policy(embeddings, tokens["input_ids"], tokens["attention_mask"])
        sizes = [(ex["image"].height, ex["image"].width) for ex in batch]
        for ex, pred in zip(batch, image_masks(logits, sizes, policy.image_size), strict=True):
            i, u = intersection_union(pred, ex["mask"])
            intersections.append(i)
            unions.append(u)
        batch.clear()

    for n, example in enumerate(ris_examples(data, split, image_column, text_column, mask_column)):
        if limit is not None and n >= limit:
            break
        batch.append(example)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return {"model": model, "data": data, "split": split, "metrics": ris_metrics(intersections, unions)}


def report_path(model: str, data: str, split: str, task: str = "ris") -> Path:
    """Where a report is written: ``<model folder>/eval-<task>-<dataset name>-<split>.json`` (the current folder for
    a Hub model id)."""
    name = re.sub(r"[^\w.-]+", "_", Path(data.rstrip("/")).name or data)
    return (Path(model) if Path(model).is_dir() else Path(".")) / f"eval-{task}-{name}-{split}.json"


def write_report(report: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return path


def pointing_examples(
    spec: str,
    split: str,
    image_column: str,
    text_column: str,
    box_column: str,
    mask_column: str,
    skipped: Counter[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """``{"image", "phrase", "boxes"}`` (xyxy pixels) per pointing-game query (see the module docstring). Boxes
    with a NaN or infinite coordinate are left out, and counted in ``skipped``."""
    skipped = Counter() if skipped is None else skipped
    if is_syngen(spec):
        rows = load_split(spec, "grounding", split).select_columns(["image", "regions"])
        for row in rows:
            boxes: dict[str, list[list[float]]] = {}
            for region in row["regions"] or []:
                if region.get("phrase") and region.get("box"):
                    if not all(map(math.isfinite, region["box"])):
                        skipped[NAN_BOXES] += 1
                        continue
                    boxes.setdefault(region["phrase"], []).append(list(region["box"]))
            image = row["image"].convert("RGB")
            for phrase, found in boxes.items():
                yield {"image": image, "phrase": phrase, "boxes": found}
        return
    table = load_table(spec, split)
    box_source = box_column if box_column in table.column_names else mask_column
    missing = [c for c in (image_column, text_column, box_source) if c not in table.column_names]
    if missing:
        raise DatasetError(f"{spec}: no column {', '.join(missing)}; columns: {', '.join(table.column_names)}")
    for row in table.select_columns([image_column, text_column, box_source]):
        image = row[image_column]
        image = (image if isinstance(image, Image.Image) else Image.open(image)).convert("RGB")
        box: list[float] | None
        if box_source == box_column:
            x, y, w, h = map(float, row[box_column])
            box = [x, y, x + w, y + h]
            if not all(map(math.isfinite, box)):
                skipped[NAN_BOXES] += 1
                continue
        else:
            ys, xs = np.nonzero(to_mask(row[mask_column], image.height, image.width))
            box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)] if len(xs) else None
        for text in sentences(row[text_column]) if box else []:
            yield {"image": image, "phrase": text, "boxes": [box]}


def evaluate_pointing(
    model: str,
    data: str,
    split: str = "train",
    *,
    baseline: str | None = None,
    image_column: str = "image",
    text_column: str = "sentences",
    box_column: str = "bbox",
    mask_column: str = "segmentation",
    batch_size: int = 8,
    limit: int | None = None,
    layer: int | None = None,
    heatmaps: int = 0,
    sheet: Path | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Pointing-game accuracy of the BLIP ITM checkpoint ``model`` (and of ``baseline``, when given) on ``data``.

    ``layer`` None = the ``gradcam_layer`` ``model`` was trained with (its ``training_config.json``), else -4.
    With ``heatmaps`` N and a ``sheet`` path, the first N queries' heat maps are drawn there (baseline first).
    Returns ``{"model", "data", "split", "gradcam_layer", "metrics"}`` plus ``"baseline": {"model", "metrics"}``.
    """
    from syngen.train.amc import check_layer, load_itm
    from syngen.train.amc import heatmaps as gradcam_maps
    from syngen.viz import draw_heatmap, heatmap_sheet

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    layer = trained_layer(model) if layer is None else layer
    runs = {"baseline": baseline, "model": model} if baseline else {"model": model}
    drawn: dict[str, list[Image.Image]] = {}
    scores: dict[str, dict[str, float]] = {}
    for role, name in runs.items():
        itm = load_itm(name, device)
        check_layer(itm.model, layer)
        skipped: Counter[str] = Counter()
        queries = pointing_examples(data, split, image_column, text_column, box_column, mask_column, skipped)
        examples = itertools.islice(queries, limit)
        hits: list[bool] = []
        drawn[role] = []
        while batch := list(itertools.islice(examples, batch_size)):
            maps = gradcam_maps(itm, [ex["image"] for ex in batch], [ex["phrase"] for ex in batch], layer)
            for ex, heat in zip(batch, maps, strict=True):
                hits.append(pointing_hit(heat, ex["boxes"], ex["image"].size))
                if len(drawn[role]) < heatmaps:
                    full = upsample(heat, ex["image"].size).clamp(0, 1).numpy()
                    drawn[role].append(draw_heatmap(ex["image"], full, ex["boxes"], ex["phrase"]))
        scores[role] = {"n": len(hits), "hits": sum(hits), "accuracy": pointing_accuracy(hits)}
        itm.close()
    report: dict[str, Any] = {"model": model, "data": data, "split": split, "gradcam_layer": layer}
    report["skipped"] = dict(skipped)  # the same for every run
    report["metrics"] = scores["model"]
    if baseline:
        report["baseline"] = {"model": baseline, "metrics": scores["baseline"]}
    if heatmaps and sheet is not None:
        tags = {"baseline": "baseline", "model": "trained"} if baseline else {"model": "model"}
        rows = [[(drawn[role][i], f"#{i} {tag}") for role, tag in tags.items()] for i in range(len(drawn["model"]))]
        report["heatmaps"] = str(heatmap_sheet(rows, sheet))
    return report


def trained_layer(model: str) -> int:
    """The ``gradcam_layer`` of a ``syngen train amc`` output or checkpoint folder; -4 (the default) otherwise."""
    saved = Path(model) / "training_config.json"
    if saved.is_file():
        return int(json.loads(saved.read_text(encoding="utf-8")).get("gradcam_layer", -4))
    return -4
