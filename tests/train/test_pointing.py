"""The pointing game (METHODS.md §7) against hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest

from syngen.train._pointing import pointing_accuracy, pointing_hit


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
