"""Helpers shared by the tests (import them from here, not from conftest.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from syngen.stages.base import finished
from syngen.threads import Pool


def draw_shapes(size: tuple[int, int] = (128, 96), seed: int = 0) -> Image.Image:
    """A deterministic RGB picture: a coloured background with a filled rectangle and ellipse."""
    rng = np.random.default_rng(seed)
    w, h = size
    img = Image.new("RGB", size, tuple(int(c) for c in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(img)
    draw.rectangle([w * 0.1, h * 0.1, w * 0.45, h * 0.6], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    draw.ellipse([w * 0.55, h * 0.3, w * 0.9, h * 0.9], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return img


def assert_finishes_beside_a_gpu(
    monkeypatch: pytest.MonkeyPatch, module: ModuleType, process: Callable[[], list], inline: list
) -> None:
    """With a stage module's CPU work beside a GPU (in the pool): ``process()`` returns before its masks' RLEs are
    encoded (the main thread goes on feeding the GPU), they are encoded in the pool's threads, and the finished
    results equal ``inline`` (the work done on the calling thread, as beside a CPU model)."""
    threads: set[str] = set()
    encode, gate = module.encode_rle, threading.Event()
    pool = Pool(2)
    monkeypatch.setattr(module, "beside_model", lambda device: pool)

    def gated(mask: np.ndarray) -> dict:
        threads.add(threading.current_thread().name)
        gate.wait(10)
        return encode(mask)

    monkeypatch.setattr(module, "encode_rle", gated)
    results = process()
    assert not any(result.done() for result in results)
    gate.set()
    assert finished(results) == inline
    assert threads and all(name.startswith("syngen-cpu") for name in threads)
    pool.shutdown()


class Calls:
    """Counts forward calls of a module and the batch size each saw."""

    def __init__(self, module: torch.nn.Module):
        self.batches: list[int] = []
        module.register_forward_hook(self._record, with_kwargs=True)

    def _record(self, module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        inputs = [*args, *kwargs.values()]  # the first input (image embeddings or pixels) is the batch
        self.batches.append(len(inputs[0]) if inputs else 0)
