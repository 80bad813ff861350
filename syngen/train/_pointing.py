"""Pointing game (METHODS.md §7); moves to syngen/metrics.py next to the RIS metrics."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def pointing_hit(heatmap: np.ndarray | torch.Tensor, boxes: Sequence[Sequence[float]], size: tuple[int, int]) -> bool:
    """Pointing game for one phrase (METHODS.md §7): ``heatmap`` (h, w) upsampled bicubically to the image
    ``size`` (width, height), its first argmax pixel (row-major), a hit when that pixel's centre lies strictly
    inside any of ``boxes`` (xyxy pixels)."""
    heat = torch.as_tensor(heatmap, dtype=torch.float32)[None, None]
    width, height = size
    if heat.shape[-2:] != (height, width):
        heat = F.interpolate(heat, size=(height, width), mode="bicubic", align_corners=False)
    index = int(heat.flatten().argmax())
    x, y = index % width + 0.5, index // width + 0.5
    return any(x1 < x < x2 and y1 < y < y2 for x1, y1, x2, y2 in boxes)


def pointing_accuracy(hits: Sequence[bool]) -> float:
    """Pointing-game accuracy: hits / phrases (0 for no phrase)."""
    return sum(hits) / len(hits) if hits else 0.0
