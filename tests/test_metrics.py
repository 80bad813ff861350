"""RIS metrics and the pointing game against hand-computed values, including empty masks, masks touching the
border, points on a box border and ties."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from syngen.masks import encode_rle
from syngen.metrics import gres_metrics, intersection_union, pointing_accuracy, pointing_hit, ris_metrics


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
    assert gres_metrics([], [], [], []) == {"n": 0}


# (I, U, predicted area, target area) per expression; target area 0 = a no-target expression
@pytest.mark.parametrize(
    "rows, expected",
    [
        pytest.param(
            [(80, 80, 80, 80), (80, 180, 80, 180), (0, 0, 0, 0), (0, 30, 30, 0), (0, 80, 0, 80)],
            {
                "gIoU": (1 + 80 / 180 + 1 + 0 + 0) / 5,
                "cIoU": 160 / 370,
                "N-acc": 1 / 2,
                "T-acc": 2 / 3,
                "Prec@0.5": 1 / 3,
                "Prec@0.9": 1 / 3,
            },
            id="single-multi-no-target-and-a-target-answered-empty",
        ),
        pytest.param(
            [(0, 0, 0, 0), (0, 0, 0, 0)],
            {"gIoU": 1.0, "cIoU": 1.0, "N-acc": 1.0},
            id="only-no-target-all-answered-empty",
        ),
        pytest.param(
            [(0, 50, 50, 0)],
            {"gIoU": 0.0, "cIoU": 0.0, "N-acc": 0.0},
            id="no-target-answered-with-a-mask",
        ),
        pytest.param(
            [(7, 10, 8, 9), (0, 5, 0, 5)],
            {"gIoU": 0.35, "cIoU": 7 / 15, "T-acc": 0.5, "Prec@0.7": 0.5, "Prec@0.8": 0.0},
            id="only-targets",
        ),
    ],
)
def test_gres_metrics_by_hand(rows, expected) -> None:
    scores = gres_metrics(*zip(*rows, strict=True))
    assert scores["n"] == len(rows)
    assert set(expected) - set(scores) == set()
    for key, value in expected.items():
        assert scores[key] == pytest.approx(value), key
    has_no_target = any(target == 0 for *_, target in rows)
    assert ("N-acc" in scores) == has_no_target and ("T-acc" in scores) == (not all(t == 0 for *_, t in rows))


def peaks(*points: tuple[int, int], size: tuple[int, int] = (5, 5)) -> np.ndarray:
    """A (h, w) map, 0 everywhere but 1 at each (x, y) of ``points``."""
    heat = np.zeros((size[1], size[0]), np.float32)
    for x, y in points:
        heat[y, x] = 1
    return heat


# The argmax pixel (x, y) is the point (x + 0.5, y + 0.5); a hit needs x1 < px < x2 and y1 < py < y2.
CASES = [
    pytest.param(peaks((2, 2)), [[1, 1, 4, 4]], True, id="inside"),
    pytest.param(peaks((2, 2)), [[2.5, 0, 5, 5]], False, id="on-left-border"),
    pytest.param(peaks((2, 2)), [[0, 0, 5, 2.5]], False, id="on-bottom-border"),
    pytest.param(peaks((2, 2)), [[0, 0, 2.5, 2.5]], False, id="on-corner"),
    pytest.param(peaks((2, 2)), [[2.4, 2.4, 2.6, 2.6]], True, id="tiny-box-around-centre"),
    pytest.param(peaks((2, 2)), [[3, 3, 5, 5]], False, id="outside"),
    pytest.param(peaks((2, 2)), [[3, 3, 5, 5], [2, 2, 3, 3]], True, id="second-of-two-boxes"),
    pytest.param(peaks((2, 2)), [], False, id="no-box"),
    pytest.param(peaks((4, 0), (0, 4)), [[4, 0, 5, 1]], True, id="tie-first-in-row-order-hits"),
    pytest.param(peaks((4, 0), (0, 4)), [[0, 4, 1, 5]], False, id="tie-later-peak-ignored"),
    pytest.param(peaks((0, 1), (1, 0)), [[1, 0, 2, 1]], True, id="tie-same-column-earlier-row"),
    pytest.param(np.zeros((5, 5)), [[0, 0, 1, 1]], True, id="flat-map-points-at-first-pixel"),
    # a 2x2 grid with its peak bottom-right, upsampled bicubically to a 4x8 image (width 8, height 4)
    pytest.param(peaks((1, 1), size=(2, 2)), [[4, 2, 8, 4]], True, id="upsampled-peak-quadrant"),
    pytest.param(peaks((1, 1), size=(2, 2)), [[0, 0, 4, 2]], False, id="upsampled-other-quadrant"),
]


@pytest.mark.parametrize("heat, boxes, hit", CASES)
def test_pointing_hit(heat: np.ndarray, boxes: list, hit: bool) -> None:
    size = (8, 4) if heat.shape == (2, 2) else (5, 5)
    assert pointing_hit(heat, boxes, size) is hit


@pytest.mark.parametrize(
    "hits, accuracy",
    [
        pytest.param([True, False, True], 2 / 3, id="two-of-three"),
        pytest.param([False], 0.0, id="miss"),
        pytest.param([], 0.0, id="no-phrase"),
    ],
)
def test_pointing_accuracy(hits: list, accuracy: float) -> None:
    assert pointing_accuracy(hits) == pytest.approx(accuracy)
