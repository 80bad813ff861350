"""Mask and box geometry: COCO RLE (through pycocotools), IoU, box checks, box masks, erosion and edge bands.

Masks are numpy bool arrays of shape (H, W); RLE dicts are ``{"size": [H, W], "counts": str}`` as
pycocotools writes them (counts decoded to str so they serialise to JSON).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypedDict

import numpy as np
from pycocotools import mask as mask_utils

from syngen.errors import excerpt


class RLE(TypedDict):
    """A binary mask as COCO RLE (``counts`` as text)."""

    size: list[int]  # [height, width]
    counts: str


def encode_rle(mask: np.ndarray) -> RLE:
    """A (H, W) bool mask as COCO RLE with str counts."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: RLE | dict[str, Any]) -> np.ndarray:
    """A COCO RLE (str or bytes counts) as a (H, W) bool mask."""
    counts = rle["counts"]
    coco = {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_utils.decode(coco).astype(bool)


def rle_problem(rle: Any, height: int, width: int, runs: bool = True) -> str | None:
    """Why ``rle`` is not a COCO RLE of an (``height``, ``width``) mask, or None when it is one.

    Checks the ``size`` and, with ``runs``, that the runs of ``counts`` (compressed as COCO's ``rleFrString``
    reads them, or a list) are non-negative and cover exactly height × width pixels: pycocotools decodes some
    malformed strings into garbage without an error."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        return f"not a COCO RLE ({{'size', 'counts'}}): {excerpt(rle)}"
    if list(rle["size"] or []) != [height, width]:
        return f"mask size {rle['size']} is not the image's [height, width] [{height}, {width}]"
    counts = rle["counts"]
    if not runs:
        return None
    if isinstance(counts, list):  # uncompressed RLE
        found: np.ndarray | None = np.asarray(counts, np.int64)
    elif isinstance(counts, str) and counts.isascii():
        found = _runs(counts.encode("ascii"))
    else:
        found = _runs(counts) if isinstance(counts, bytes) else None
    if found is None or np.any(found < 0) or int(found.sum()) != height * width:
        return f"garbage RLE counts {excerpt(counts, 40)}: its runs do not cover the {height}x{width} mask"
    return None


def _runs(counts: bytes) -> np.ndarray | None:
    """The run lengths of a compressed COCO counts string, or None when it ends mid-number or holds a character
    outside its alphabet. Each number is 5 bits a character (bit 0x20: more follow; 0x10 in the last: negative);
    from the third on, each is the difference to the run two back. Vectorised: a mask's check costs microseconds."""
    if not counts:
        return np.zeros(0, np.int64)
    chars = np.frombuffer(counts, np.uint8).astype(np.int64) - 48
    if chars.min() < 0 or chars.max() >= 64 or chars[-1] & 0x20:
        return None
    ends = np.flatnonzero((chars & 0x20) == 0)
    starts = np.r_[0, ends[:-1] + 1]
    lengths = ends - starts + 1
    if lengths.max() > 12:  # more bits than a run of any image has (and than int64 shifts hold)
        return None
    place = np.arange(len(chars)) - np.repeat(starts, lengths)
    values = np.add.reduceat((chars & 0x1F) << (5 * place), starts)
    values = np.where(chars[ends] & 0x10, values | (-1 << (5 * lengths)), values)
    runs = values.copy()
    runs[1::2] = np.cumsum(values[1::2])  # run m (m >= 3) = its value + run m - 2
    runs[2::2] = np.cumsum(values[2::2])
    return runs


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


def box_span(box: Sequence[float], height: int, width: int) -> tuple[slice, slice]:
    """The rows and the columns of the pixels whose centres lie inside the xyxy box (``x1 <= x + 0.5 < x2``), as
    slices (``slice(0, 0)`` when there are none)."""

    def span(low: float, high: float, n: int) -> slice:
        start, stop = _centres_below(low, n), _centres_below(high, n)
        return slice(start, stop) if start < stop and not math.isnan(low) else slice(0, 0)

    return span(box[1], box[3], height), span(box[0], box[2], width)


def _centres_below(value: float, n: int) -> int:
    """How many of the pixel centres ``x + 0.5`` (``x`` in ``0 .. n - 1``) lie below ``value`` (none below NaN).

    ``x + 0.5 < value`` holds for ``x < ceil(value - 0.5)``, and ``value - 0.5`` is exact in float64 wherever the
    count is not clamped to 0 or ``n`` (``0.5 <= |value| < 2**52``), so no rounding moves the count."""
    value = float(value)  # a float32 coordinate compares as a float64, as it does against an array of centres
    if math.isnan(value):
        return 0
    if math.isinf(value):
        return n if value > 0 else 0
    return min(max(math.ceil(value - 0.5), 0), n)


def box_mask(box: Sequence[float], height: int, width: int) -> np.ndarray:
    """(H, W) bool mask of the pixels whose centres lie inside the xyxy box (``x1 <= x + 0.5 < x2``)."""
    mask = np.zeros((height, width), bool)
    mask[box_span(box, height, width)] = True
    return mask


def share_in_box(mask: np.ndarray, box: Sequence[float]) -> float:
    """Share of a bool mask's pixels that lie inside the xyxy box; 0.0 for an empty mask."""
    area = np.count_nonzero(mask)
    return np.count_nonzero(mask[box_span(box, *mask.shape)]) / area if area else 0.0


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """A bool mask eroded by a (2r+1)-pixel square; pixels outside the image count as background."""
    from scipy import ndimage  # here, not at the top: importing it doubles the CLI's start-up

    # a pixel survives when its whole square is set: the square's minimum, outside the image 0 (separable: a
    # running minimum along each axis, cheaper than running counts: docs/benchmarks.md#figures-behind-the-code)
    return ndimage.minimum_filter(np.asarray(mask, bool), size=2 * radius + 1, mode="constant", cval=0)


def edge_band(mask: np.ndarray, width: int) -> np.ndarray:
    """The pixels of a bool mask within ``width`` pixels (chessboard distance) of its edge or the image border."""
    return mask & ~erode(mask, width)
