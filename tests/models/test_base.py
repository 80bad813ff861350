"""What every adapter shares (syngen/models/base.py): image processors on the model's GPU."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch
from transformers.image_processing_backends import PilBackend, TorchvisionBackend

from syngen.models.base import Adapter
from syngen.models.blip import BlipCaptioner
from syngen.models.grounding_dino import GroundingDino
from syngen.models.llava import LlavaCaptioner
from syngen.models.loading import build_tiny
from syngen.models.sam_hf import HFSam
from tests.helpers import draw_shapes


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


class Recorder:
    """A processor stand-in that records the keyword arguments of each call and passes it on."""

    def __init__(self, processor: Any) -> None:
        self.processor, self.calls = processor, []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        return self.processor(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.processor, name)


def _detect(model: Any) -> None:
    model.detect([draw_shapes()], ["cat."], 0.3, 0.25)


def _embed(model: Any) -> None:
    model.embed([draw_shapes()], ["key"])


def _caption(model: Any) -> None:
    model.caption([draw_shapes()], "a picture of", 3)


@pytest.mark.parametrize(
    ("cls", "twin", "call"),
    [
        pytest.param(GroundingDino, "grounder", _detect, id="grounding-dino"),
        pytest.param(HFSam, "segmenter", _embed, id="sam"),
        pytest.param(BlipCaptioner, "captioner-blip", _caption, id="blip"),
        pytest.param(LlavaCaptioner, "captioner-llava", _caption, id="llava"),
    ],
)
def test_every_image_call_takes_the_image_kwargs(cls: type, twin: str, call: Any) -> None:
    """What :meth:`Adapter.image_kwargs` returns reaches the processor call (on a GPU: ``device``)."""
    model = cls(build_tiny(twin))
    model.processor = Recorder(model.processor)
    model.image_kwargs = lambda processor: {"device": torch.device("cpu")}
    call(model)
    assert [kwargs.get("device") for kwargs in model.processor.calls] == [torch.device("cpu")]


def test_timed_counts_the_calls_wall_and_this_threads_cpu_time() -> None:
    import time

    from syngen.models.base import timed

    class Busy(Adapter):
        @timed
        def spin(self, seconds: float) -> None:
            end = time.thread_time() + seconds
            while time.thread_time() < end:
                pass

        @timed
        def sleep(self, seconds: float) -> None:
            time.sleep(seconds)

    model = Busy("unused")
    model.spin(0.05)
    assert model.model_cpu_seconds >= 0.05 and model.model_seconds >= model.model_cpu_seconds - 0.01
    cpu = model.model_cpu_seconds
    model.sleep(0.1)  # wall time, hardly any CPU
    assert model.model_seconds >= 0.15 and model.model_cpu_seconds - cpu < 0.05
