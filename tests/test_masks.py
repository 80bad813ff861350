"""syngen.masks: RLE and IoU against pycocotools, box helpers, box masks, erosion and edge bands."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from scipy import ndimage

from syngen.masks import (
    box_area,
    box_iou,
    box_mask,
    box_span,
    clip_box,
    decode_rle,
    edge_band,
    encode_rle,
    erode,
    is_valid_box,
    mask_iou,
    share_in_box,
)


def _rect(shape: tuple[int, int], x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[y1:y2, x1:x2] = True
    return mask


RNG = np.random.default_rng(0)
MASK_PAIRS = [
    (_rect((20, 30), 2, 2, 10, 10), _rect((20, 30), 2, 2, 10, 10)),
    (_rect((20, 30), 0, 0, 5, 5), _rect((20, 30), 10, 10, 20, 20)),
    (_rect((20, 30), 0, 0, 20, 20), _rect((20, 30), 5, 5, 10, 10)),
    (_rect((20, 30), 0, 0, 10, 10), _rect((20, 30), 5, 5, 15, 15)),
    (RNG.random((17, 23)) < 0.5, RNG.random((17, 23)) < 0.3),
    (np.zeros((8, 8), bool), np.zeros((8, 8), bool)),
]
MASK_IDS = ["identical", "disjoint", "nested", "overlap", "random", "both-empty"]


@pytest.mark.parametrize("a,b", MASK_PAIRS, ids=MASK_IDS)
def test_rle_round_trip_and_iou_match_pycocotools(a: np.ndarray, b: np.ndarray) -> None:
    ra, rb = encode_rle(a), encode_rle(b)
    assert isinstance(ra["counts"], str) and ra["size"] == list(a.shape)
    assert np.array_equal(decode_rle(ra), a) and np.array_equal(decode_rle(rb), b)
    coco = [{"size": r["size"], "counts": r["counts"].encode()} for r in (ra, rb)]
    expected = mask_utils.iou([coco[0]], [coco[1]], [0])[0][0]
    assert mask_iou(a, b) == pytest.approx(expected)


def test_decode_rle_accepts_bytes_counts() -> None:
    mask = _rect((6, 7), 1, 2, 4, 5)
    rle = encode_rle(mask)
    assert np.array_equal(decode_rle({"size": rle["size"], "counts": rle["counts"].encode()}), mask)


@pytest.mark.parametrize(
    "a,b",
    [
        ([0, 0, 10, 10], [5, 5, 15, 15]),
        ([0, 0, 10, 10], [20, 20, 30, 30]),
        ([2, 3, 8.5, 9], [2, 3, 8.5, 9]),
        ([0, 0, 10, 10], [2, 2, 4, 4]),
    ],
    ids=["overlap", "disjoint", "identical", "nested"],
)
def test_box_iou_matches_pycocotools(a: list[float], b: list[float]) -> None:
    def xywh(box: list[float]) -> list[float]:
        return [box[0], box[1], box[2] - box[0], box[3] - box[1]]

    assert box_iou(a, b) == pytest.approx(mask_utils.iou([xywh(a)], [xywh(b)], [0])[0][0])


@pytest.mark.parametrize(
    "box,area", [([0, 0, 4, 5], 20.0), ([3, 3, 1, 5], 0.0), ([1.5, 0, 2, 2], 1.0)], ids=["plain", "inverted", "float"]
)
def test_box_area(box: list[float], area: float) -> None:
    assert box_area(box) == area


@pytest.mark.parametrize(
    "box,clipped",
    [
        ([-5, -1, 50, 30], [0.0, 0.0, 40.0, 30.0]),
        ([1, 2, 3, 4], [1.0, 2.0, 3.0, 4.0]),
        ([50, 40, 60, 45], [40.0, 30.0, 40.0, 30.0]),
    ],
    ids=["overhang", "inside", "outside"],
)
def test_clip_box(box: list[float], clipped: list[float]) -> None:
    assert clip_box(box, 40, 30) == clipped


@pytest.mark.parametrize(
    "box,valid",
    [
        ([1, 1, 5, 5], True),
        ([1, 1, 1, 5], False),
        ([50, 50, 60, 60], False),
        ([0, 0, math.nan, 5], False),
        ([0, 0, math.inf, 5], False),
        ([0, 0, 5], False),
    ],
    ids=["ok", "zero-width", "off-image", "nan", "inf", "three-values"],
)
def test_is_valid_box(box: list[float], valid: bool) -> None:
    assert is_valid_box(box, 40, 30) is valid


@pytest.mark.parametrize(
    "box,rows,cols",
    [
        ([1, 2, 4, 3], [2], [1, 2, 3]),
        ([0.4, 0, 1.6, 1], [0], [0, 1]),
        ([0.6, 0, 1.4, 1], [0], []),
        ([-3, -3, 100, 100], list(range(5)), list(range(6))),
        ([0.5, 1.5, 2.5, 3.5], [1, 2], [0, 1]),
    ],
    ids=["integer", "covers-centres", "misses-centres", "overhang", "centres-on-edges-in-left-top-out-right-bottom"],
)
def test_box_mask_takes_pixels_whose_centres_are_inside(box: list[float], rows: list[int], cols: list[int]) -> None:
    expected = np.zeros((5, 6), bool)
    expected[np.ix_(rows, cols)] = True
    assert np.array_equal(box_mask(box, 5, 6), expected)
    row_span, col_span = box_span(box, 5, 6)
    if rows and cols:
        assert (row_span, col_span) == (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    else:
        assert not np.zeros((5, 6))[row_span, col_span].size


def _span_by_centres(low: float, high: float, n: int) -> slice:
    """box_span's rule written out over every centre (its former implementation): the reference."""
    centres = np.arange(n) + 0.5
    inside = np.flatnonzero((centres >= low) & (centres < high))
    return slice(int(inside[0]), int(inside[-1]) + 1) if len(inside) else slice(0, 0)


SPAN_RNG = np.random.default_rng(7)
SPAN_BOXES = {
    "random": [list(SPAN_RNG.uniform(-5, 40, 4)) for _ in range(200)],
    "on-centres-and-edges": [list(SPAN_RNG.integers(-2, 40, 4) / 2) for _ in range(200)],
    "a-hair-from-centres": [
        list(np.nextafter(centres, centres + SPAN_RNG.choice([-1, 1], 4)))
        for centres in SPAN_RNG.integers(-2, 40, (200, 4)) + 0.5
    ],
    "float32": [list(SPAN_RNG.uniform(-5, 40, 4).astype(np.float32)) for _ in range(200)],
    "integers": [[int(v) for v in SPAN_RNG.integers(-3, 40, 4)] for _ in range(200)],
    "huge-and-tiny": [[-1e300, 1e-300, 1e300, 5e-324], [1e-17, 0.5 - 1e-17, 30.5 + 2e-15, 31.5]],
    "non-finite": [
        [math.nan, 0, 10, 10],
        [0, math.nan, 10, 10],
        [0, 0, math.nan, 10],
        [0, 0, 10, math.nan],
        [-math.inf, -math.inf, math.inf, math.inf],
        [math.inf, 0, -math.inf, 10],
    ],
}


@pytest.mark.parametrize("boxes", SPAN_BOXES.values(), ids=SPAN_BOXES.keys())
@pytest.mark.parametrize(("height", "width"), [(24, 32), (1, 1), (0, 3)], ids=["24x32", "1x1", "no-rows"])
def test_box_span_equals_testing_every_centre(boxes: list[list[float]], height: int, width: int) -> None:
    for box in boxes:
        expected = (_span_by_centres(box[1], box[3], height), _span_by_centres(box[0], box[2], width))
        assert box_span(box, height, width) == expected, box


@pytest.mark.parametrize("density", [0.0, 0.05, 0.5, 1.0], ids=["empty-mask", "sparse-mask", "half-mask", "full-mask"])
def test_share_in_box_equals_the_full_image_count(density: float) -> None:
    rng = np.random.default_rng(int(density * 100))
    for box in SPAN_BOXES["random"] + SPAN_BOXES["on-centres-and-edges"]:
        mask = rng.random((24, 32)) < density
        area = mask.sum()  # the former computation: the mask against the box's full-image mask
        expected = float(np.logical_and(mask, box_mask(box, 24, 32)).sum() / area) if area else 0.0
        assert share_in_box(mask, box) == expected


@pytest.mark.parametrize(
    "mask,box,share",
    [
        (_rect((10, 10), 0, 0, 4, 4), [0, 0, 2, 4], 0.5),
        (_rect((10, 10), 0, 0, 4, 4), [5, 5, 9, 9], 0.0),
        (np.zeros((10, 10), bool), [0, 0, 10, 10], 0.0),
        (_rect((10, 10), 2, 2, 4, 4), [0, 0, 10, 10], 1.0),
    ],
    ids=["half", "none", "empty-mask", "all"],
)
def test_share_in_box(mask: np.ndarray, box: list[float], share: float) -> None:
    assert share_in_box(mask, box) == share


ERODED = {
    "dense-block": ((31, 37), 0.8, True),
    "sparse-noise": ((31, 37), 0.3, False),
    "one-row": ((1, 40), 0.9, False),
    "one-column": ((40, 1), 0.9, False),
    "all-set": ((12, 9), 1.0, False),
    "empty": ((12, 9), 0.0, False),
}


@pytest.mark.parametrize("case", ERODED.values(), ids=ERODED.keys())
@pytest.mark.parametrize("radius", [0, 1, 2, 5, 40], ids=["r0", "r1", "r2", "r5", "r40-wider-than-the-mask"])
def test_erode_matches_scipy(case: tuple[tuple[int, int], float, bool], radius: int) -> None:
    shape, density, block = case
    mask = np.random.default_rng(radius).random(shape) < density
    if block:
        mask[5:25, 8:30] = True
    expected = ndimage.binary_erosion(mask, np.ones((2 * radius + 1,) * 2, bool), border_value=0)
    assert np.array_equal(erode(mask, radius), expected)
    assert np.array_equal(erode(mask.astype(np.uint8), radius), expected)  # 0/1 masks as bools
    assert np.array_equal(erode(np.asfortranarray(mask), radius), expected)  # as pycocotools decodes them
    assert np.array_equal(erode(mask[:, ::-1], radius), expected[:, ::-1])  # a strided view


def test_edge_band_is_a_ring_of_the_given_width() -> None:
    mask = _rect((12, 12), 2, 2, 10, 10)
    band = edge_band(mask, 2)
    assert np.array_equal(band, mask & ~_rect((12, 12), 4, 4, 8, 8))
    # the image border counts as an edge
    assert np.array_equal(edge_band(np.ones((5, 5), bool), 1), ~_rect((5, 5), 1, 1, 4, 4))
