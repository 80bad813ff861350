"""What every adapter shares (syngen/models/base.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch
from transformers.image_processing_backends import PilBackend, TorchvisionBackend

from syngen.models.base import Adapter


def image_processor(kind: type) -> Any:
    """An instance of a backend class without running its constructor (the torchvision one needs torchvision)."""
    return object.__new__(kind)


@pytest.mark.parametrize(
    ("device", "processor", "expected"),
    [
        pytest.param("cuda", SimpleNamespace(image_processor=image_processor(TorchvisionBackend)), "cuda", id="gpu-tv"),
        pytest.param("cuda:1", image_processor(TorchvisionBackend), "cuda:1", id="gpu-tv-bare-image-processor"),
        pytest.param("cuda", SimpleNamespace(image_processor=image_processor(PilBackend)), None, id="gpu-pil"),
        pytest.param("cpu", SimpleNamespace(image_processor=image_processor(TorchvisionBackend)), None, id="cpu-tv"),
        pytest.param("cuda", SimpleNamespace(tokenizer=object()), None, id="gpu-no-image-processor"),
    ],
)
def test_images_are_prepared_on_the_gpu_only_by_a_torchvision_processor(
    device: str, processor: Any, expected: str | None
) -> None:
    kwargs = Adapter("unused", device=device).image_kwargs(processor)
    assert kwargs == ({} if expected is None else {"device": torch.device(expected)})
