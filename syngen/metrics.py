"""Evaluation metrics (METHODS.md §7).

Referring segmentation: per expression i, I_i and U_i are the pixel intersection and union of the predicted
and ground-truth masks.

- ``oIoU`` (= cIoU) = Σ I_i / Σ U_i (0 when every union is empty).
- ``mIoU`` = mean of I_i / U_i with IoU = 0 when U_i = 0 (LAVT's convention).
- ``gIoU`` = the same mean with IoU = 1 when both masks are empty (gRefCOCO / LISA's convention).
- ``Prec@X`` for X in 0.5 … 0.9: share of expressions with IoU ≥ X (IoU as in ``mIoU``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PRECISION_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def intersection_union(pred: np.ndarray, target: np.ndarray) -> tuple[int, int]:
    """Pixel intersection and union of two (H, W) bool masks of the same shape."""
    if pred.shape != target.shape:
        raise ValueError(f"mask shapes differ: {pred.shape} vs {target.shape}")
    return int(np.logical_and(pred, target).sum()), int(np.logical_or(pred, target).sum())


def ris_metrics(intersections: Sequence[int], unions: Sequence[int]) -> dict[str, float]:
    """oIoU, mIoU, gIoU and Prec@X from per-expression intersections and unions (see the module docstring)."""
    inter = np.asarray(intersections, dtype=np.float64)
    union = np.asarray(unions, dtype=np.float64)
    n = len(inter)
    if n == 0:
        return {"n": 0}
    both_empty = union == 0
    iou = np.divide(inter, union, out=np.zeros(n), where=~both_empty)
    scores: dict[str, float] = {
        "n": n,
        "oIoU": float(inter.sum() / union.sum()) if union.sum() else 0.0,
        "mIoU": float(iou.mean()),
        "gIoU": float(np.where(both_empty, 1.0, iou).mean()),
    }
    for x in PRECISION_THRESHOLDS:
        scores[f"Prec@{x}"] = float((iou >= x).mean())
    return scores
