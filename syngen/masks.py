"""Mask and box geometry: COCO RLE (through pycocotools), IoU, box checks.

Masks are numpy bool arrays of shape (H, W); RLE dicts are ``{"size": [H, W], "counts": str}`` as
pycocotools writes them (counts decoded to str so they serialise to JSON).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from pycocotools import mask as mask_utils

RLE = dict[str, Any]


def encode_rle(mask: np.ndarray) -> RLE:
    """A (H, W) bool mask as COCO RLE with str counts."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: RLE) -> np.ndarray:
    """A COCO RLE (str or bytes counts) as a (H, W) bool mask."""
    counts = rle["counts"]
    coco = {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_utils.decode(coco).astype(bool)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two bool masks of the same shape; 0.0 when both are empty."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def box_area(box: Sequence[float]) -> float:
    """Area of an xyxy box (0 for inverted boxes)."""
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two xyxy boxes."""
    inter = box_area([max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])])
    union = box_area(a) + box_area(b) - inter
    return inter / union if union > 0 else 0.0


def clip_box(box: Sequence[float], width: int, height: int) -> list[float]:
    """An xyxy box clipped to the image."""
    return [
        min(max(float(box[0]), 0.0), width),
        min(max(float(box[1]), 0.0), height),
        min(max(float(box[2]), 0.0), width),
        min(max(float(box[3]), 0.0), height),
    ]


def is_valid_box(box: Sequence[float], width: int, height: int) -> bool:
    """False for boxes with NaN/inf coordinates, or with zero area once clipped to the image."""
    if len(box) != 4 or not all(math.isfinite(float(v)) for v in box):
        return False
    return box_area(clip_box(box, width, height)) > 0
