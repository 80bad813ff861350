"""Fake models for stage tests and benchmarks: small, deterministic stand-ins for each model role.

Each fake satisfies its role's Protocol in syngen.models.roles (tests/test_fakes.py checks it), so a stage test
with a fake exercises the same calls the real backend gets.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from syngen.masks import box_mask


class FakeModel:
    """What every model has: ``model_seconds`` and ``close``."""

    def __init__(self) -> None:
        self.model_seconds = 0.0
        self.closed = False

    def close(self) -> None:
        self.closed = True


class FakeCaptioner(FakeModel):
    """Returns scripted captions; records the prompts and image sizes it was given."""

    def __init__(self, captions: list[str]):
        super().__init__()
        self.captions = captions
        self.calls: list[tuple[str, list[tuple[int, int]]]] = []

    def caption(self, images: list, prompt: str, max_new_tokens: int) -> list[str]:
        self.calls.append((prompt, [image.size for image in images]))
        return self.captions[: len(images)]


class FakeLLM(FakeModel):
    def __init__(self, answers: list[str]):
        super().__init__()
        self.answers = answers
        self.prompts: list[str] = []

    def chat(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        self.prompts += prompts
        return self.answers[: len(prompts)]


class FakeGrounder(FakeModel):
    """Answers each prompt with the scripted detections whose ``phrase`` is one of the prompt's, pointing at it by
    its index in the prompt as the real grounder does; records the calls."""

    def __init__(self, detections: list[dict[str, Any]] | None = None):
        super().__init__()
        self.detections = detections or []
        self.calls: list[list[str]] = []  # the prompts of each detect call

    def count_tokens(self, text: str) -> int:
        return len(re.findall(r"\w+|[^\w\s]", text)) + 2  # words and punctuation, plus [CLS] and [SEP]

    def detect(self, images: list, prompts: list[str], box_threshold: float, text_threshold: float) -> list:
        assert len(images) == len(prompts)
        self.calls.append(prompts)
        found = []
        for prompt in prompts:
            phrases = prompt[:-1].split(". ")
            mine = [d for d in self.detections if d["phrase"] in phrases]
            found.append([d | {"phrase": phrases.index(d["phrase"])} for d in mine])
        return found


class FakeSegmenter(FakeModel):
    """Returns full masks except an empty one for every box whose x1 is negative."""

    def __init__(self) -> None:
        super().__init__()
        self.embedded: list[str] = []
        self.encoder_calls = 0
        self.cache_limit = 64

    def embed(self, images: list, keys: list[str]) -> None:
        self.embedded += keys

    def predict(
        self,
        key: str,
        boxes: np.ndarray | None = None,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        assert boxes is not None, "the segment stage prompts with boxes"
        masks = np.ones((len(boxes), 96, 128), dtype=bool)
        masks[boxes[:, 0] < 0] = False
        return masks, np.linspace(0.1, 0.9, len(boxes), dtype=np.float32)

    def predict_batch(self, keys: list[str], boxes: list[np.ndarray] | None = None, **prompts: Any) -> list:
        assert boxes is not None, "the segment stage prompts with boxes"
        return [self.predict(key, boxes=image_boxes) for key, image_boxes in zip(keys, boxes, strict=True)]


class FakeInstanceGrounder(FakeModel):
    """SAM 3 scripted: ``instances`` maps a phrase to its (box, score) pairs; each instance's mask is its box
    filled (empty for a box whose x1 is negative), at the size of the image embedded under the key. Applies the
    threshold and best-first order as the real one does; records the embedded keys and each ground call."""

    max_text_tokens = 32

    def __init__(self, instances: dict[str, list[tuple[list[float], float]]]):
        super().__init__()
        self.instances = instances
        self.sizes: dict[str, tuple[int, int]] = {}  # key -> (height, width)
        self.embedded: list[list[str]] = []
        self.calls: list[tuple[list[str], list[list[str]], float]] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split()) + 2

    def embed(self, images: list, keys: list[str]) -> None:
        self.embedded.append(keys)
        self.sizes |= {key: (image.height, image.width) for image, key in zip(images, keys, strict=True)}

    def ground(self, keys: list[str], phrases: list[list[str]], threshold: float) -> list:
        self.calls.append((keys, phrases, threshold))
        return [
            [
                [
                    {"box": box, "mask": box_mask(box, *self.sizes[key]) & (box[0] >= 0), "score": score}
                    for box, score in sorted(self.instances.get(phrase, []), key=lambda inst: -inst[1])
                    if score > threshold
                ]
                for phrase in image_phrases
            ]
            for key, image_phrases in zip(keys, phrases, strict=True)
        ]


class FakeTextToImage(FakeModel):
    """Makes a flat image per prompt whose colour comes from its seed; records the prompts of each call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []

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
        self.calls.append(list(prompts))
        size = (width or 64, height or 64)
        return [Image.new("RGB", size, (seed % 256, seed // 256 % 256, 0)) for seed in seeds]


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


class FloodFillSegmenter(FakeModel):
    """A deterministic stand-in for SAM: flood fill of same-colour pixels.

    A prompt's mask is the union of the flood fills (4-connected, same RGB colour) from its positive points, minus
    the flood fills from its negative points; with a box, fills stay inside the box, and with a box and no positive
    point the fill starts at the box centre. Scores are the mask's share of the box (1.0 without a box).
    Each decoder call (a ``predict_batch``, or a ``predict``: one image) is recorded: ``predict_sizes`` its number
    of prompts, ``predict_images`` its number of images, ``predict_multimask`` its ``multimask`` flag (a flood fill
    has one answer, so the flag changes nothing else).
    """

    def __init__(self) -> None:
        super().__init__()
        self.cache_limit = 64
        self.pixels: dict[str, np.ndarray] = {}
        self.encoder_calls = 0
        self.predict_sizes: list[int] = []
        self.predict_images: list[int] = []
        self.predict_multimask: list[bool] = []

    def embed(self, images: list[Image.Image], keys: list[str]) -> None:
        for image, key in zip(images, keys, strict=True):
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
        masks, scores = self._image(key, boxes, points, labels)
        self._record([len(masks)], multimask)
        return masks, scores

    def predict_batch(
        self,
        keys: list[str],
        boxes: list[np.ndarray] | None = None,
        points: list[np.ndarray] | None = None,
        labels: list[np.ndarray] | None = None,
        multimask: bool = False,
        host: bool = True,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        results = [
            self._image(key, *(None if prompts is None else prompts[i] for prompts in (boxes, points, labels)))
            for i, key in enumerate(keys)
        ]
        self._record([len(masks) for masks, _ in results], multimask)
        return results

    def _record(self, sizes: list[int], multimask: bool) -> None:
        self.predict_sizes.append(sum(sizes))
        self.predict_images.append(len(sizes))
        self.predict_multimask.append(multimask)

    def _image(
        self, key: str, boxes: np.ndarray | None, points: np.ndarray | None, labels: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """One image's masks and scores for its prompts."""
        pixels = self.pixels[key]
        n = len(boxes) if boxes is not None else len(points)  # type: ignore[arg-type]
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
        seeds = [(int(x), int(y)) for (x, y), label in zip(points, labels, strict=True) if label == 1]
        if box is not None and not seeds:
            seeds = [(int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2))]
        mask = np.zeros((height, width), bool)
        for x, y in seeds:
            mask |= flood_fill(pixels, allowed, x, y)
        for (x, y), label in zip(points, labels, strict=True):
            if label == 0:
                mask &= ~flood_fill(pixels, allowed, int(x), int(y))
        return mask
