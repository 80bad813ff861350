"""A syngen dataset built by the tests: pictures of objects of known shapes, exported with syngen's own export.

Each picture (64×64) has a red square and a blue circle at seeded positions; the regions' phrases name them and
their masks are exact. Each region has preference pairs whose rejected mask is the true mask dilated, eroded
or shifted (``kind`` says which), as SAM-perturbed negatives would be.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from syngen.export import CardInfo, export_dataset
from syngen.masks import encode_rle, mask_iou
from syngen.sample import image_bytes

SIZE = 64
SHAPES = {"red square": (220, 30, 30), "blue circle": (30, 60, 220)}


def shape_mask(name: str, cx: int, cy: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    if name == "red square":
        return (abs(xx - cx) <= r) & (abs(yy - cy) <= r)
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def perturb(mask: np.ndarray, kind: str) -> np.ndarray:
    """The mask dilated or eroded by 3 pixels (square structuring element), or shifted by 6 pixels."""
    if kind == "shifted":
        return np.roll(mask, (6, 6), axis=(0, 1))
    padded = np.pad(mask, 3, constant_values=kind == "eroded")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (7, 7))
    return windows.any(axis=(2, 3)) if kind == "dilated" else windows.all(axis=(2, 3))


def make_sample(index: int, kinds: tuple[str, ...]) -> dict:
    rng = np.random.default_rng(index)
    pixels = np.full((SIZE, SIZE, 3), 200, np.uint8)
    regions = []
    for k, (name, colour) in enumerate(SHAPES.items()):
        r = int(rng.integers(7, 11))
        cx = int(rng.integers(r + 1, SIZE // 2 - 2)) + k * SIZE // 2
        cy = int(rng.integers(r + 1, SIZE - r - 1))
        mask = shape_mask(name, cx, cy, r)
        pixels[mask] = colour
        ys, xs = np.nonzero(mask)
        negatives = [
            {"kind": kind, "mask": encode_rle(perturb(mask, kind)), "iou": mask_iou(mask, perturb(mask, kind))}
            for kind in kinds
        ]
        regions.append(
            {
                "phrase": name,
                "box": [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)],
                "box_score": 1.0,
                "mask": encode_rle(mask),
                "mask_score": 1.0,
                "negatives": negatives,
                "views": [],
            }
        )
    return {
        "id": f"shapes{index:03d}",
        "source": {"kind": "test", "item": str(index)},
        "image": image_bytes(Image.fromarray(pixels)),
        "width": SIZE,
        "height": SIZE,
        "caption": "a red square and a blue circle",
        "phrases": list(SHAPES),
        "regions": regions,
    }


def make_shapes_dataset(
    out: Path, images: int = 4, kinds: tuple[str, ...] = ("dilated", "eroded", "shifted"), embed: bool = False
) -> Path:
    """Exports ``images`` pictures into ``out/dataset`` (``out`` is then a syngen output folder); returns ``out``."""
    export_dataset((make_sample(i, kinds) for i in range(images)), out, CardInfo(name="shapes"), embed_images=embed)
    return out
