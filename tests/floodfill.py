"""A deterministic stand-in for SAM in tests: flood fill of same-colour pixels.

Same interface as the segmenter adapters (syngen/models/__init__.py): ``embed(images, keys)``,
``predict(key, boxes, points, labels) -> (masks, scores)``, ``encoder_calls``. A prompt's mask is the union of
the flood fills (4-connected, same RGB colour) from its positive points, minus the flood fills from its
negative points; with a box, fills stay inside the box, and with a box and no positive point the fill starts
at the box centre. Scores are the mask's share of the box (1.0 without a box). ``predict_sizes`` records the
number of prompts of each predict call, ``predict_multimask`` its ``multimask`` flag (a flood fill has one
answer, so the flag changes nothing else).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from syngen.masks import box_mask


def flood_fill(pixels: np.ndarray, allowed: np.ndarray, x: int, y: int) -> np.ndarray:
    """(H, W) bool: the 4-connected pixels of the same colour as (x, y) reachable through ``allowed`` pixels."""
    region = np.zeros(allowed.shape, bool)
    if not allowed[y, x]:
        return region
    same = allowed & (pixels == pixels[y, x]).all(axis=-1)
    region[y, x] = True
    while True:
        grown = region.copy()
        grown[1:] |= region[:-1]
        grown[:-1] |= region[1:]
        grown[:, 1:] |= region[:, :-1]
        grown[:, :-1] |= region[:, 1:]
        grown &= same
        if (grown == region).all():
            return region
        region = grown


class FloodFillSegmenter:
    """Flood-fill segmenter with SAM's interface (see the module docstring)."""

    def __init__(self) -> None:
        self.pixels: dict[str, np.ndarray] = {}
        self.encoder_calls = 0
        self.predict_sizes: list[int] = []
        self.predict_multimask: list[bool] = []

    def embed(self, images: list[Image.Image], keys: list[str]) -> None:
        for image, key in zip(images, keys):
            if key not in self.pixels:
                self.pixels[key] = np.asarray(image.convert("RGB"))
                self.encoder_calls += 1

    def predict(
        self,
        key: str,
        boxes: np.ndarray | None = None,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        multimask: bool = False,
        host: bool = True,  # numpy either way: the CPU is its device
    ) -> tuple[np.ndarray, np.ndarray]:
        pixels = self.pixels[key]
        n = len(boxes) if boxes is not None else len(points)
        self.predict_sizes.append(n)
        self.predict_multimask.append(multimask)
        masks, scores = [], []
        for i in range(n):
            box = None if boxes is None else boxes[i]
            mask = self._one(pixels, box, [] if points is None else points[i], [] if labels is None else labels[i])
            masks.append(mask)
            scores.append(mask.sum() / max(1, box_mask(box, *mask.shape).sum()) if box is not None else 1.0)
        return np.stack(masks), np.array(scores, dtype=np.float32)

    @staticmethod
    def _one(pixels: np.ndarray, box: Sequence[float] | None, points: Sequence, labels: Sequence) -> np.ndarray:
        height, width = pixels.shape[:2]
        allowed = np.ones((height, width), bool) if box is None else box_mask(box, height, width)
        seeds = [(int(x), int(y)) for (x, y), label in zip(points, labels) if label == 1]
        if box is not None and not seeds:
            seeds = [(int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2))]
        mask = np.zeros((height, width), bool)
        for x, y in seeds:
            mask |= flood_fill(pixels, allowed, x, y)
        for (x, y), label in zip(points, labels):
            if label == 0:
                mask &= ~flood_fill(pixels, allowed, int(x), int(y))
        return mask
