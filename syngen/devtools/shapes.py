"""A syngen dataset for tests and benchmarks (``benchmarks/learn.py``): pictures of objects of known shapes,
exported with syngen's own export.

Each picture (64×64) has a red square and a blue circle at seeded positions; the regions' phrases name them and
their masks are exact. Each region has preference pairs whose rejected mask is the true mask dilated, eroded
or shifted (``kind`` says which), as SAM-perturbed negatives would be.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np
from PIL import Image

from syngen.export import CardInfo, export_dataset
from syngen.masks import encode_rle, mask_iou
from syngen.sample import Sample, image_bytes

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
    return np.asarray(windows.any(axis=(2, 3)) if kind == "dilated" else windows.all(axis=(2, 3)))


def region(phrase: str, mask: np.ndarray, negatives: list[tuple[str, np.ndarray]], exact: np.ndarray) -> dict:
    """A ``grounding`` region: phrase, mask and its box, and negatives (kind, mask) with their IoU against ``exact``."""
    ys, xs = np.nonzero(mask)
    return {
        "phrase": phrase,
        "box": [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)],
        "box_score": 1.0,
        "mask": encode_rle(mask),
        "mask_score": 1.0,
        "negatives": [{"kind": k, "mask": encode_rle(neg), "iou": mask_iou(exact, neg)} for k, neg in negatives],
        "views": [],
    }


def picture(sample_id: str, index: int, pixels: np.ndarray, regions: list[dict], caption: str) -> Sample:
    """A sample of one SIZE² picture and its regions."""
    return cast(
        Sample,
        {
            "id": sample_id,
            "source": {"kind": "test", "item": str(index)},
            "image": image_bytes(Image.fromarray(pixels)),
            "width": SIZE,
            "height": SIZE,
            "caption": caption,
            "phrases": [r["phrase"] for r in regions],
            "regions": regions,
        },
    )


def make_sample(index: int, kinds: tuple[str, ...]) -> Sample:
    rng = np.random.default_rng(index)
    pixels = np.full((SIZE, SIZE, 3), 200, np.uint8)
    regions = []
    for k, (name, colour) in enumerate(SHAPES.items()):
        r = int(rng.integers(7, 11))
        cx = int(rng.integers(r + 1, SIZE // 2 - 2)) + k * SIZE // 2
        cy = int(rng.integers(r + 1, SIZE - r - 1))
        mask = shape_mask(name, cx, cy, r)
        pixels[mask] = colour
        regions.append(region(name, mask, [(kind, perturb(mask, kind)) for kind in kinds], mask))
    return picture(f"shapes{index:03d}", index, pixels, regions, "a red square and a blue circle")


def make_shapes_dataset(
    out: Path, images: int = 4, kinds: tuple[str, ...] = ("dilated", "eroded", "shifted"), embed: bool = False
) -> Path:
    """Exports ``images`` pictures into ``out/dataset`` (``out`` is then a syngen output folder); returns ``out``."""
    export_dataset((make_sample(i, kinds) for i in range(images)), out, CardInfo(name="shapes"), embed_images=embed)
    return out


# A richer world, for proving that a policy learns: three colours × three shapes, two different objects per
# picture at random places, so that neither the phrase alone nor a fixed position finds the object.
COLOURS = {"red": (220, 30, 30), "green": (30, 170, 60), "blue": (30, 60, 220)}
FORMS = ("square", "circle", "triangle")
DIRECTIONS = ((0, 1), (1, 0), (0, -1), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1))  # (dy, dx)


def form_mask(form: str, cx: int, cy: int, r: int, size: int = SIZE) -> np.ndarray:
    """A filled square, circle or (upward) triangle of half-size ``r`` centred at (cx, cy), on a size² grid."""
    yy, xx = np.mgrid[:size, :size]
    if form == "square":
        return (abs(xx - cx) <= r) & (abs(yy - cy) <= r)
    if form == "circle":
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    return (yy <= cy + r) & (yy >= cy - r) & (abs(xx - cx) <= (yy - (cy - r)) / 2)


def grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    """The mask dilated (``pixels`` > 0) or eroded (< 0) by a square of side 2|pixels| + 1."""
    k = abs(pixels)
    padded = np.pad(mask, k, constant_values=pixels < 0)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (2 * k + 1, 2 * k + 1))
    return np.asarray(windows.any(axis=(2, 3)) if pixels > 0 else windows.all(axis=(2, 3)))


def shift(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """The mask moved by (dy, dx) pixels; what leaves the picture is lost (no wrap-around)."""
    out = np.zeros_like(mask)
    h, w = mask.shape
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = mask[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def world_negative(mask: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A rejected mask of ``kind``: ``dilated``/``eroded`` by 2-4 px, or ``shifted`` 4-8 px in one of 8 directions."""
    if kind == "shifted":
        dy, dx = DIRECTIONS[int(rng.integers(len(DIRECTIONS)))]
        step = int(rng.integers(4, 9))
        return shift(mask, dy * step, dx * step)
    pixels = int(rng.integers(2, 5))
    return grow(mask, pixels if kind == "dilated" else -pixels)


def world_sample(index: int, label_noise: int = 0, kinds: tuple[str, ...] = (), fixed_grow: int = 0) -> Sample:
    """Picture ``index`` of the world (seeded by it): two objects of different colour-and-form pairs.

    Region masks are exact, or dilated by ``label_noise`` px (a weak labeller's masks). Each region gets one
    negative per ``kind`` (see :func:`world_negative`), or with ``fixed_grow`` its exact mask dilated by that many
    pixels as its only negative.
    """
    rng = np.random.default_rng(10_000 + index)
    pixels = np.full((SIZE, SIZE, 3), 200, np.uint8)
    pairs = [(c, f) for c in COLOURS for f in FORMS]
    chosen = rng.choice(len(pairs), size=2, replace=False)
    left = int(rng.integers(2))  # which object takes the left half
    regions = []
    for k, pick in enumerate(chosen):
        colour, form = pairs[int(pick)]
        r = int(rng.integers(7, 11))
        half = k if left else 1 - k
        cx = int(rng.integers(r + 1, SIZE // 2 - r)) + half * SIZE // 2
        cy = int(rng.integers(r + 1, SIZE - r - 1))
        exact = form_mask(form, cx, cy, r)
        pixels[exact] = COLOURS[colour]
        mask = grow(exact, label_noise) if label_noise else exact
        if fixed_grow:
            negatives = [("dilated", grow(exact, fixed_grow))]
        else:
            negatives = [(kind, world_negative(exact, kind, rng)) for kind in kinds]
        regions.append(region(f"{colour} {form}", mask, negatives, exact))
    return picture(f"world{index:04d}", index, pixels, regions, " and ".join(r["phrase"] for r in regions))


def make_world(out: Path, indices: range, **options: object) -> Path:
    """Exports the world's pictures ``indices`` (see :func:`world_sample` for ``options``) into ``out/dataset``."""
    samples = (world_sample(i, **options) for i in indices)  # type: ignore[arg-type]
    export_dataset(samples, out, CardInfo(name="world"), embed_images=False)
    return out
