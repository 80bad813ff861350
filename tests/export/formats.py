"""A dataset for the COCO and YOLO exports: masks of several shapes (a rectangle, an L, two pieces, a ring with a
hole, one on the image's border), a region without a mask, a repeated phrase, JPEG and PNG images."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from syngen.export import export_dataset
from syngen.masks import encode_rle
from tests.export.test_export import HEIGHT, WIDTH, make_info, make_region, make_sample


def shape(name: str) -> np.ndarray:
    """A (HEIGHT, WIDTH) bool mask of the named shape."""
    mask = np.zeros((HEIGHT, WIDTH), bool)
    if name == "rectangle":
        mask[10:40, 20:60] = True
    elif name == "L":
        mask[20:70, 10:20] = True
        mask[60:70, 10:50] = True
    elif name == "two-pieces":
        mask[5:25, 5:25] = True
        mask[50:80, 70:110] = True
    elif name == "ring":
        mask[20:80, 30:90] = True
        mask[40:60, 50:70] = False
    elif name == "border":
        mask[0:30, WIDTH - 40 : WIDTH] = True
    return mask


SHAPES = ["rectangle", "L", "two-pieces", "ring", "border"]
PHRASES = {"rectangle": "Red  box", "L": "the L", "two-pieces": "red box", "ring": "a ring", "border": "corner"}


def region(name: str) -> dict:
    mask = shape(name)
    ys, xs = np.nonzero(mask)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    return make_region(box, phrase=PHRASES[name]) | {"mask": encode_rle(mask)}


def make_dataset(out: Path) -> Path:
    """Three images: two shapes each on the first two (the second a JPEG), and on the third the last shape and a
    region without a mask. Returns ``out``."""
    samples = [
        make_sample(0, [region("rectangle"), region("L")]),
        make_sample(1, [region("two-pieces"), region("ring")]),
    ]
    no_mask = make_region((5, 5, 25, 45), phrase="pole") | {"mask": None}
    samples.append(make_sample(2, [region("border"), no_mask]))
    jpeg = io.BytesIO()
    Image.new("RGB", (WIDTH, HEIGHT), (10, 200, 30)).save(jpeg, format="JPEG")
    samples[1]["image"] = jpeg.getvalue()
    export_dataset(samples, out, make_info())
    return out
