"""Scoring checkpoints: ``syngen eval ris`` (referring segmentation with :mod:`syngen.metrics`).

Data for ``ris``: a syngen dataset's ``grounding`` config (each region's phrase and mask), or a RefCOCO-style
table: a Hugging Face dataset folder (``save_to_disk`` or Hub layout), parquet files, or a Hub id, with an image
column, an expression column (a string, or a list of sentences: strings or dicts with ``sent``/``raw``) and a
mask column (COCO RLE ``{"size", "counts"}`` or polygons ``[[x1, y1, x2, y2, ...], ...]``). Every sentence is
one expression. Nothing is unpickled.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from syngen.masks import decode_rle
from syngen.metrics import intersection_union, ris_metrics
from syngen.train.data import dataset_path, load_split
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
        return datasets.load_dataset("parquet", data_files=files, split="train")
    if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
        loaded = datasets.load_from_disk(str(path))
        return loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
    return datasets.load_dataset(spec, split=split)


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
    """A (H, W) bool mask from COCO RLE (compressed or not) or polygons (a list of [x, y, ...] lists, or one)."""
    if isinstance(value, dict):
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
            for region in row["regions"] or []:
                if region.get("mask") and region.get("phrase"):
                    yield {
                        "key": row["id"],
                        "image": image,
                        "phrase": region["phrase"],
                        "mask": decode_rle(region["mask"]),
                    }
        return
    table = load_table(spec, split)
    missing = [c for c in (image_column, text_column, mask_column) if c not in table.column_names]
    if missing:
        raise ValueError(f"{spec}: no column {', '.join(missing)}; columns: {', '.join(table.column_names)}")
    for i, row in enumerate(table.select_columns([image_column, text_column, mask_column])):
        image = row[image_column]
        image = (image if isinstance(image, Image.Image) else Image.open(image)).convert("RGB")
        mask = to_mask(row[mask_column], image.height, image.width)
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


def report_path(model: str, data: str, split: str) -> Path:
    """Where a report is written: ``<model folder>/eval-ris-<dataset name>-<split>.json`` (the current folder for a
    Hub model id)."""
    name = re.sub(r"[^\w.-]+", "_", Path(data.rstrip("/")).name or data)
    return (Path(model) if Path(model).is_dir() else Path(".")) / f"eval-ris-{name}-{split}.json"


def write_report(report: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return path
