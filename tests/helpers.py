"""Helpers shared by the tests (import them from here, not from conftest.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
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


class Calls:
    """Counts forward calls of a module and the batch size each saw."""

    def __init__(self, module: torch.nn.Module):
        self.batches: list[int] = []
        module.register_forward_hook(self._record, with_kwargs=True)

    def _record(self, module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        inputs = [*args, *kwargs.values()]  # the first input (image embeddings or pixels) is the batch
        self.batches.append(len(inputs[0]) if inputs else 0)
