"""``syngen export OUT --format coco``: the grounding config as COCO instances plus RefCOCO-style refs.

Writes ``<out>/export/coco/``:

- ``images/<id>.<ext>``: each image's bytes as stored in the dataset (not re-encoded);
- ``instances.json``: COCO ``images`` (integer ids from 1, with ``syngen_id``), ``annotations`` (one per region:
  ``segmentation`` the region's mask as RLE with text counts, ``bbox`` its box as ``[x, y, w, h]``, ``area`` the
  mask's pixel count, ``iscrowd`` 0) and ``categories`` (one per distinct phrase, see
  :class:`~syngen.export.files.Categories`). A region without a mask gets its box as a polygon;
- ``refs.json``: one ref per annotation, as the REFER toolkit reads them (``ref_id``, ``ann_id``, ``image_id``,
  ``category_id``, ``split``, ``file_name``, ``sentences`` with ``sent``/``raw``/``tokens``/``sent_id``,
  ``sent_ids``).

Files are written as they are made: one row's image at a time, and the annotations (a few hundred bytes each)
kept until the end.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pycocotools import mask as mask_utils

from syngen.export.files import Categories, image_rows
from syngen.owned import replacing


def export_coco(out: Path) -> Path:
    """Converts ``<out>/dataset`` into ``<out>/export/coco/`` (replacing an earlier export); returns the folder."""
    target = Path(out) / "export" / "coco"
    with replacing(target) as folder:
        (folder / "images").mkdir()
        images: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        refs: list[dict[str, Any]] = []
        categories = Categories()
        for image_id, row in enumerate(image_rows(Path(out) / "dataset"), start=1):
            (folder / "images" / row.file_name).write_bytes(row.data)
            images.append(
                {
                    "id": image_id,
                    "file_name": row.file_name,
                    "width": row.width,
                    "height": row.height,
                    "syngen_id": row.id,
                }
            )
            for index, region in enumerate(row.regions):
                ann_id = len(annotations) + 1
                annotation = _annotation(region, row.width, row.height)
                category = categories.id(region.get("phrase"))
                annotations.append({"id": ann_id, "image_id": image_id, "category_id": category, **annotation})
                annotations[-1]["syngen_region"] = index
                refs.append(_ref(ann_id, image_id, category, row.file_name, region.get("phrase") or ""))
        names = [{"id": i, "name": name, "supercategory": "phrase"} for name, i in categories.ids.items()]
        instances = {
            "info": {"description": f"syngen dataset {Path(out).name}", "version": "1.0"},
            "licenses": [],
            "images": images,
            "annotations": annotations,
            "categories": names,
        }
        (folder / "instances.json").write_text(json.dumps(instances), encoding="utf-8")
        (folder / "refs.json").write_text(json.dumps(refs), encoding="utf-8")
    return target


def _annotation(region: dict[str, Any], width: int, height: int) -> dict[str, Any]:
    """The geometry of a region: segmentation, bbox (xywh), area and iscrowd."""
    x1, y1, x2, y2 = (float(v) for v in region["box"])
    bbox = [x1, y1, x2 - x1, y2 - y1]
    mask = region.get("mask")
    if mask is None:  # no segment stage: the box as a polygon
        return {
            "segmentation": [[x1, y1, x2, y1, x2, y2, x1, y2]],
            "bbox": bbox,
            "area": bbox[2] * bbox[3],
            "iscrowd": 0,
        }
    rle = {"size": [int(v) for v in mask["size"]], "counts": mask["counts"]}
    area = float(mask_utils.area({"size": rle["size"], "counts": rle["counts"].encode("ascii")}))
    return {"segmentation": rle, "bbox": bbox, "area": area, "iscrowd": 0}


def _ref(ann_id: int, image_id: int, category: int, file_name: str, phrase: str) -> dict[str, Any]:
    """A RefCOCO-style ref: the phrase as the one sentence referring to annotation ``ann_id``."""
    sentence = {"sent_id": ann_id, "sent": phrase.lower(), "raw": phrase, "tokens": re.findall(r"\w+", phrase.lower())}
    return {
        "ref_id": ann_id,
        "ann_id": ann_id,
        "image_id": image_id,
        "category_id": category,
        "split": "train",
        "file_name": file_name,
        "sentences": [sentence],
        "sent_ids": [ann_id],
    }
