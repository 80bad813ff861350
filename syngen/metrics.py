"""Evaluation metrics (docs/methods.md#metrics).

Referring segmentation: per expression i, I_i and U_i are the pixel intersection and union of the predicted
and ground-truth masks.

- ``oIoU`` (= cIoU) = Σ I_i / Σ U_i (0 when every union is empty).
- ``mIoU`` = mean of I_i / U_i with IoU = 0 when U_i = 0 (LAVT's convention).
- ``gIoU`` = the same mean with IoU = 1 when both masks are empty (gRefCOCO / LISA's convention).
- ``Prec@X`` for X in 0.5 … 0.9: share of expressions with IoU ≥ X (IoU as in ``mIoU``).

Generalised referring segmentation (gRefCOCO; the convention of ReLA's ``ReferEvaluator``,
henghuiding/ReLA gres_model/evaluation/refer_evaluation.py), where an expression may refer to no object (an
empty target) and a model answers "no target" with an empty mask:

- ``gIoU`` = mean IoU with IoU = 1 when both masks are empty (a no-target expression answered empty).
- ``cIoU`` = Σ I_i / Σ U_i over every expression (a no-target expression answered with a mask adds its area to
  the unions; 1 when every union is empty: every expression was no-target and answered empty).
- ``N-acc`` = share of no-target expressions answered empty; ``T-acc`` = share of target expressions answered
  with a non-empty mask. Each is left out when the split has no expression of its kind.
- ``Prec@X`` over the target expressions only.

Pointing game (as AMC and SynGround evaluate): a phrase's heat map, upsampled bicubically to the image, points at
the centre of its first argmax pixel; a hit when that point lies strictly inside any of the phrase's boxes.
Accuracy = hits / phrases.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

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


def gres_metrics(
    intersections: Sequence[int], unions: Sequence[int], predicted: Sequence[int], targets: Sequence[int]
) -> dict[str, float]:
    """gIoU, cIoU, N-acc, T-acc and Prec@X (see the module docstring) from each expression's intersection, union,
    predicted mask area and target mask area (0 for a no-target expression)."""
    inter, union, pred, target = (np.asarray(v, dtype=np.float64) for v in (intersections, unions, predicted, targets))
    n = len(inter)
    if n == 0:
        return {"n": 0}
    iou = np.divide(inter, union, out=np.ones(n), where=union > 0)
    no_target = target == 0
    scores: dict[str, float] = {
        "n": n,
        "gIoU": float(iou.mean()),
        "cIoU": float(inter.sum() / union.sum()) if union.sum() else 1.0,
    }
    if no_target.any():
        scores["N-acc"] = float((pred[no_target] == 0).mean())
    if (~no_target).any():
        scores["T-acc"] = float((pred[~no_target] > 0).mean())
        for x in PRECISION_THRESHOLDS:
            scores[f"Prec@{x}"] = float((iou[~no_target] >= x).mean())
    return scores


def upsample(heatmap: np.ndarray | torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A (h, w) heat map resampled bicubically to the image ``size`` (width, height) (unchanged at that size)."""
    heat = torch.as_tensor(heatmap, dtype=torch.float32)
    width, height = size
    if heat.shape == (height, width):
        return heat
    return F.interpolate(heat[None, None], size=(height, width), mode="bicubic", align_corners=False)[0, 0]


def pointing_hit(heatmap: np.ndarray | torch.Tensor, boxes: Sequence[Sequence[float]], size: tuple[int, int]) -> bool:
    """Pointing game for one phrase: ``heatmap`` (h, w) upsampled to the image ``size`` (width, height), its first
    argmax pixel (row-major), a hit when that pixel's centre lies strictly inside any of ``boxes`` (xyxy pixels)."""
    index = int(upsample(heatmap, size).flatten().argmax())
    x, y = index % size[0] + 0.5, index // size[0] + 0.5
    return any(x1 < x < x2 and y1 < y < y2 for x1, y1, x2, y2 in boxes)


def pointing_accuracy(hits: Sequence[bool]) -> float:
    """Pointing-game accuracy: hits / phrases (0 for no phrase)."""
    return sum(hits) / len(hits) if hits else 0.0
