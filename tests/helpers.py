"""Helpers shared by the tests (import them from here, not from conftest.py)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def draw_shapes(size: tuple[int, int] = (128, 96), seed: int = 0) -> Image.Image:
    """A deterministic RGB picture: a coloured background with a filled rectangle and ellipse."""
    rng = np.random.default_rng(seed)
    w, h = size
    img = Image.new("RGB", size, tuple(int(c) for c in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(img)
    draw.rectangle([w * 0.1, h * 0.1, w * 0.45, h * 0.6], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    draw.ellipse([w * 0.55, h * 0.3, w * 0.9, h * 0.9], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return img
