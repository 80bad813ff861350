"""Small local copies of the published benchmarks, each in its exact schema (columns, types, mask conventions,
file names and splits), with masks that are rectangles so tests (and benchmarks/eval.py) can compute
every metric by hand.

A rectangle ``(x1, y1, x2, y2)`` covers pixels x1 <= x < x2, y1 <= y < y2; as a COCO polygon its corners are
``[x1, y1, x2, y1, x2, y2, x1, y2]`` (pycocotools fills exactly those pixels). Images are H=20 × W=30.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
from PIL import Image

from syngen.masks import encode_rle

H, W = 20, 30
Rect = tuple[int, int, int, int]


def rect(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[y1:y2, x1:x2] = True
    return mask


def polygon(r: Rect) -> list[float]:
    x1, y1, x2, y2 = r
    return [float(v) for v in (x1, y1, x2, y1, x2, y2, x1, y2)]


def picture(seed: int, size: tuple[int, int] = (H, W)) -> Image.Image:
    """Random pixels, (height, width) ``size``."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8))


# lmms-lab/RefCOCO: one row per object (dataset card's dataset_info)
LMMS_FEATURES = datasets.Features(
    {
        "question_id": datasets.Value("string"),
        "image": datasets.Image(),
        "question": datasets.Value("string"),
        "answer": datasets.Sequence(datasets.Value("string")),
        "segmentation": datasets.Sequence(datasets.Value("float32")),
        "bbox": datasets.Sequence(datasets.Value("float32")),
        "iscrowd": datasets.Value("int8"),
        "file_name": datasets.Value("string"),
    }
)
LMMS_CARD = """---
configs:
- config_name: default
  data_files:
  - split: val
    path: data/val-*
  - split: testA
    path: data/testA-*
---
"""


def lmms_refcoco(
    root: Path, splits: dict[str, list[tuple[int, Rect, list[str]]]], size: tuple[int, int] = (H, W)
) -> Path:
    """A local copy of lmms-lab/RefCOCO: per split, objects as (image seed, rectangle, sentences); images of
    (height, width) ``size``."""
    (root / "data").mkdir(parents=True)
    (root / "README.md").write_text(LMMS_CARD)
    for split, objects in splits.items():
        rows: dict[str, list] = {name: [] for name in LMMS_FEATURES}
        for n, (seed, r, sentences) in enumerate(objects):
            x1, y1, x2, y2 = r
            rows["question_id"].append(f"{split}{n}")
            rows["image"].append(picture(seed, size))
            rows["question"].append("Provide a short description for this region.")
            rows["answer"].append(sentences)
            rows["segmentation"].append(polygon(r))
            rows["bbox"].append([x1, y1, x2 - x1, y2 - y1])
            rows["iscrowd"].append(0)
            rows["file_name"].append(f"COCO_train2014_{seed:012d}.jpg")
        table = datasets.Dataset.from_dict(rows, features=LMMS_FEATURES)
        table.to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))
    return root


# moondream/refcoco-m: one row per image, samples[] per object, RLE masks
REFCOCO_M_FEATURES = datasets.Features(
    {
        "image": datasets.Image(),
        "image_id": datasets.Value("int64"),
        "file_name": datasets.Value("string"),
        "samples": [
            {
                "sentences": datasets.Sequence(datasets.Value("string")),
                "mask": {"counts": datasets.Value("string"), "size": datasets.Sequence(datasets.Value("int64"))},
                "bbox": datasets.Sequence(datasets.Value("float64")),
            }
        ],
    }
)


def refcoco_m(root: Path, images: list[tuple[int, list[tuple[Rect, list[str]]]]]) -> Path:
    """A local copy of moondream/refcoco-m: images as (seed, [(rectangle, sentences)])."""
    (root / "data").mkdir(parents=True)
    rows: dict[str, list] = {name: [] for name in REFCOCO_M_FEATURES}
    for seed, objects in images:
        rows["image"].append(picture(seed))
        rows["image_id"].append(seed)
        rows["file_name"].append(f"COCO_train2014_{seed:012d}.jpg")
        samples = []
        for r, sentences in objects:
            x1, y1, x2, y2 = r
            samples.append({"sentences": sentences, "mask": encode_rle(rect(*r)), "bbox": [x1, y1, x2 - x1, y2 - y1]})
        rows["samples"].append(samples)
    table = datasets.Dataset.from_dict(rows, features=REFCOCO_M_FEATURES)
    table.to_parquet(str(root / "data" / "validation-00000-of-00001.parquet"))
    return root


def grefcoco(root: Path, annotations: list[dict], refs: list[dict], seed: int = 7) -> Path:
    """G_REFER's layout: root/grefcoco/grefs(unc).json + instances.json, root/images/train2014/<file>; one image
    (id 1) holding ``annotations`` (COCO dicts without image_id)."""
    (root / "grefcoco").mkdir(parents=True)
    (root / "images" / "train2014").mkdir(parents=True)
    file_name = "COCO_train2014_000000000001.jpg"
    picture(seed).save(root / "images" / "train2014" / file_name, format="JPEG")
    instances = {
        "images": [{"id": 1, "file_name": file_name, "height": H, "width": W}],
        "annotations": [{"image_id": 1, "category_id": 1, **ann} for ann in annotations],
        "categories": [{"id": 1, "name": "box", "supercategory": "shape"}],
    }
    (root / "grefcoco" / "instances.json").write_text(json.dumps(instances))
    (root / "grefcoco" / "grefs(unc).json").write_text(json.dumps(refs))
    return root


def gref(ref_id: int, split: str, ann_ids: list[int], *raw: str) -> dict:
    """A G_REFER ref: ``ann_ids`` [-1] = no target."""
    return {
        "ref_id": ref_id,
        "image_id": 1,
        "split": split,
        "ann_id": ann_ids,
        "category_id": [1] if ann_ids != [-1] else [],
        "no_target": ann_ids == [-1],
        "sentences": [
            {"sent_id": 10 * ref_id + j, "sent": text.lower(), "raw": text, "tokens": text.lower().split()}
            for j, text in enumerate(raw)
        ],
    }
