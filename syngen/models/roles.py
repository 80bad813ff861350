"""The model roles: one Protocol per role, the batch call a stage of that role makes.

A backend adapter (one file per backend, registered in :data:`syngen.models.BACKENDS` with its role) satisfies
its role's Protocol; a stage names the role it needs (``Stage.role``) and receives the loaded model in
``process(samples, model)``. Inputs and outputs are plain Python, numpy and PIL.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, TypedDict, runtime_checkable

import numpy as np
from PIL import Image

Role = Literal["captioner", "text-to-image", "llm", "grounder", "segmenter"]


class Detection(TypedDict):
    """One grounder detection: the prompt's phrase it belongs to (its index among the prompt's "."-separated
    phrases, by token scores; None when no phrase token passed the text threshold), the text of its tokens above
    the threshold (for information), its box (xyxy pixels) and score."""

    phrase: int | None
    label: str
    box: list[float]
    score: float


@runtime_checkable
class Model(Protocol):
    """What every loaded model has: the seconds spent inside its batch calls, and a way to free it."""

    model_seconds: float

    def close(self) -> None: ...


@runtime_checkable
class Captioner(Model, Protocol):
    def caption(self, images: list[Image.Image], prompt: str, max_new_tokens: int) -> list[str]:
        """One caption per image (the prompt is BLIP's text prefix or LLaVA's instruction)."""
        ...


@runtime_checkable
class TextToImage(Model, Protocol):
    def generate(
        self,
        prompts: list[str],
        seeds: list[int],
        *,
        negative_prompt: str | None = None,
        steps: int,
        guidance_scale: float,
        height: int | None = None,
        width: int | None = None,
    ) -> list[Image.Image]:
        """One image per prompt, each from its own seeded generator."""
        ...


@runtime_checkable
class ChatLLM(Model, Protocol):
    def chat(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        """The answer to each prompt, sent as one user message (chat template, greedy)."""
        ...


@runtime_checkable
class Grounder(Model, Protocol):
    def detect(
        self, images: list[Image.Image], prompts: list[str], box_threshold: float, text_threshold: float
    ) -> list[list[Detection]]:
        """Detections per image for its prompt (``"a. b. c."``), in one model call."""
        ...

    def count_tokens(self, text: str) -> int:
        """Text tokens the model's processor makes of ``text`` (special tokens included)."""
        ...


class Instance(TypedDict):
    """One instance a phrase matched (SAM 3): its box (xyxy pixels), mask (H, W) bool at the image's size, and
    score (the query's probability times the phrase's presence probability)."""

    box: list[float]
    mask: np.ndarray
    score: float


@runtime_checkable
class InstanceGrounder(Model, Protocol):
    """A grounder that also segments (SAM 3): every instance of each phrase, with its mask, from one image
    embedding per image."""

    max_text_tokens: int  # tokens a phrase may have (special tokens included)

    def embed(self, images: list[Image.Image], keys: list[str]) -> None:
        """Cache the embeddings of the images whose keys are not cached (one encoder call)."""
        ...

    def ground(self, keys: list[str], phrases: list[list[str]], threshold: float) -> list[list[list[Instance]]]:
        """Per cached image ``keys[i]``, per phrase of ``phrases[i]``: its instances scoring above ``threshold``,
        best first (every phrase of every image in one model call)."""
        ...

    def count_tokens(self, text: str) -> int:
        """Text tokens the model's tokenizer makes of ``text`` (special tokens included)."""
        ...


@runtime_checkable
class Segmenter(Model, Protocol):
    encoder_calls: int  # images through the image encoder so far
    cache_limit: int  # embeddings kept (least recently used evicted past it)

    def embed(self, images: list[Image.Image], keys: list[str]) -> None:
        """Cache the embeddings of the images whose keys are not cached (one encoder call)."""
        ...

    def predict(
        self,
        key: str,
        boxes: np.ndarray | None = None,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        multimask: bool = False,
        host: bool = True,
    ) -> tuple[Any, Any]:
        """Masks (N, H, W) bool and scores (N,) for N prompts on the image embedded under ``key``; ``multimask``:
        the best of SAM's three masks per prompt; ``host=False``: tensors left on the model's device (numpy
        arrays are accepted too)."""
        ...

    def predict_batch(
        self,
        keys: list[str],
        boxes: list[np.ndarray] | None = None,
        points: list[np.ndarray] | None = None,
        labels: list[np.ndarray] | None = None,
        multimask: bool = False,
        host: bool = True,
    ) -> list[tuple[Any, Any]]:
        """``predict`` for several cached images in one mask-decoder call where the backend allows: image
        ``keys[i]`` gets ``boxes[i]``, ``points[i]``, ``labels[i]`` (N may differ between images, K may not); one
        (masks, scores) per key, equal to what ``predict`` gives for that image alone."""
        ...


# a backend of a role implements one of its Protocols
PROTOCOLS: dict[Role, type | tuple[type, ...]] = {
    "captioner": Captioner,
    "text-to-image": TextToImage,
    "llm": ChatLLM,
    "grounder": (Grounder, InstanceGrounder),
    "segmenter": Segmenter,
}
