"""RIS metrics against hand-computed values, including empty masks and masks touching the border."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from syngen.masks import encode_rle
from syngen.metrics import intersection_union, ris_metrics


def box(x1: int, y1: int, x2: int, y2: int, size: int = 10) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[y1:y2, x1:x2] = True
    return mask


EMPTY = np.zeros((10, 10), bool)


@pytest.mark.parametrize(
    "pred, target, inter, union",
    [
        pytest.param(box(0, 0, 4, 4), box(2, 2, 6, 6), 4, 28, id="overlap"),
        pytest.param(box(0, 0, 4, 4), box(0, 0, 4, 4), 16, 16, id="identical"),
        pytest.param(EMPTY, box(2, 2, 6, 6), 0, 16, id="empty-prediction"),
        pytest.param(box(2, 2, 6, 6), EMPTY, 0, 16, id="empty-target"),
        pytest.param(EMPTY, EMPTY, 0, 0, id="both-empty"),
        pytest.param(box(0, 0, 10, 10), box(5, 0, 10, 10), 50, 100, id="full-frame-vs-right-half-at-the-border"),
        pytest.param(box(7, 7, 10, 10), box(8, 8, 10, 10), 4, 9, id="corner-masks-touching-the-border"),
    ],
)
def test_intersection_union_by_hand_and_by_pycocotools(pred, target, inter, union) -> None:
    assert intersection_union(pred, target) == (inter, union)
    if union:  # pycocotools' IoU on RLE, an independent implementation
        coco = [{**r, "counts": r["counts"].encode()} for r in (encode_rle(pred), encode_rle(target))]
        assert mask_utils.iou([coco[0]], [coco[1]], [0])[0][0] == pytest.approx(inter / union)


def test_shapes_must_match() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        intersection_union(EMPTY, np.zeros((5, 5), bool))


@pytest.mark.parametrize(
    "pairs, expected",
    [
        pytest.param(
            [(4, 28), (16, 16), (0, 16), (0, 0), (50, 100), (4, 9)],
            {
                "oIoU": 74 / 169,
                "mIoU": (4 / 28 + 1 + 0 + 0 + 0.5 + 4 / 9) / 6,
                "gIoU": (4 / 28 + 1 + 0 + 1 + 0.5 + 4 / 9) / 6,
                "Prec@0.5": 2 / 6,
                "Prec@0.6": 1 / 6,
                "Prec@0.9": 1 / 6,
            },
            id="mixed-with-an-empty-pair",
        ),
        pytest.param(
            [(0, 0), (0, 0)],
            {"oIoU": 0.0, "mIoU": 0.0, "gIoU": 1.0, "Prec@0.5": 0.0},
            id="all-empty-lavt-0-giou-1",
        ),
        pytest.param(
            [(7, 10), (8, 10), (9, 10)],
            {"oIoU": 0.8, "mIoU": 0.8, "Prec@0.7": 1.0, "Prec@0.8": 2 / 3, "Prec@0.9": 1 / 3},
            id="iou-exactly-at-the-thresholds-counts",
        ),
    ],
)
def test_ris_metrics_by_hand(pairs, expected) -> None:
    scores = ris_metrics(*zip(*pairs, strict=True))
    assert scores["n"] == len(pairs)
    for key, value in expected.items():
        assert scores[key] == pytest.approx(value), key


def test_no_expressions() -> None:
    assert ris_metrics([], []) == {"n": 0}
