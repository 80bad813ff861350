"""Segmenter backend: transformers' SamModel (real checkpoint: facebook/sam-vit-base), and the embedding cache that
every SAM backend shares."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import (
    SamConfig,
    SamModel,
    SamProcessor,
)

from syngen.models.base import Adapter, timed

VISION_INIT_STD = 0.02  # the vision tower's initializer_range for a SAM built from a config


def seeing(config: SamConfig) -> SamConfig:
    """``config`` (changed in place and returned) with the vision tower's ``initializer_range`` at 0.02.

    transformers' ``SamVisionConfig`` defaults to 1e-10: a SAM built from a config then has image embeddings of
    about 1e-20 and its masks do not depend on the image. Use it for every SAM built from a config (twins, random
    models that learn); pretrained weights overwrite the initialisation, so loading a checkpoint is unaffected.
    """
    config.vision_config.initializer_range = VISION_INIT_STD
    return config


Prompts = tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]  # one image's boxes, points, labels


@dataclass
class Embedding:
    """One image's cached encoder output, with the sizes needed to map prompts in and masks out."""

    features: torch.Tensor  # (1, C, h, w)
    original_size: tuple[int, int]  # (H, W) of the image
    input_size: tuple[int, int]  # (H, W) of the resized image inside the encoder's padded square


class CachedSegmenter(Adapter):
    """SAM with an LRU cache of image embeddings: ``embed`` once per image, then ``predict`` any number of prompts.

    Subclasses implement ``_encode`` (a batch of images through the image encoder, one call) and ``_decode``
    (the prompts of several images through the prompt encoder and mask decoder, SAM's single-mask output or its
    three masks per prompt).
    """

    def __init__(self, path: str | Path, device: str = "cpu", dtype: str = "float32", trust_remote_code: bool = False):
        super().__init__(path, device, dtype, trust_remote_code)
        self.cache_limit = 64
        self.encoder_calls = 0
        self._cache: OrderedDict[str, Embedding] = OrderedDict()

    @timed
    def embed(self, images: list[Image.Image], keys: list[str]) -> None:
        """Compute and cache the embeddings of the images whose keys are not cached, in one encoder call.

        The least recently used embeddings are evicted past ``cache_limit``, never those of this call.
        """
        todo: dict[str, Image.Image] = {}
        for image, key in zip(images, keys, strict=True):
            if key in self._cache:
                self._cache.move_to_end(key)
            else:
                todo.setdefault(key, image)
        if todo:
            for key, embedding in zip(todo, self._encode(list(todo.values())), strict=True):
                self._cache[key] = embedding
            self.encoder_calls += len(todo)
        while len(self._cache) > max(self.cache_limit, len(set(keys))):
            self._cache.popitem(last=False)

    def predict(
        self,
        key: str,
        boxes: np.ndarray | None = None,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        multimask: bool = False,
        host: bool = True,
    ) -> tuple[Any, Any]:
        """Masks for N prompts on the image embedded under ``key``, all through the mask decoder at once.

        boxes: (N, 4) xyxy pixels; points: (N, K, 2) xy pixels with labels (N, K), 1 = foreground, 0 = background.
        Either or both. ``multimask``: ask SAM for its three masks per prompt and keep the one with the highest
        predicted IoU, as SAM's predictor advises for an ambiguous prompt such as a single click; otherwise SAM's
        single-mask output (best for boxes). Returns masks (N, H, W) bool at the image's original size and scores
        (N,) (SAM's predicted IoU) as numpy arrays, or with ``host=False`` as tensors left on the model's device
        (no copy to the host). Raises KeyError if ``key`` was never embedded (or was evicted).
        """
        [result] = self.predict_batch(
            [key],
            None if boxes is None else [boxes],
            None if points is None else [points],
            None if labels is None else [labels],
            multimask,
            host,
        )
        return result

    @timed
    def predict_batch(
        self,
        keys: list[str],
        boxes: list[np.ndarray] | None = None,
        points: list[np.ndarray] | None = None,
        labels: list[np.ndarray] | None = None,
        multimask: bool = False,
        host: bool = True,
    ) -> list[tuple[Any, Any]]:
        """:meth:`predict` for several images at once: the prompts of image ``keys[i]`` are ``boxes[i]``,
        ``points[i]`` and ``labels[i]`` (shapes as in :meth:`predict`; N may differ between images, K may not), and
        the prompts of all images go through the mask decoder together (one call where the backend allows).
        Returns one (masks, scores) per key, as :meth:`predict` would for that image alone.
        """
        if boxes is None and points is None:
            raise ValueError("predict needs boxes, points, or both")
        if (points is None) != (labels is None):
            raise ValueError("points and labels go together")
        if any(prompts is not None and len(prompts) != len(keys) for prompts in (boxes, points, labels)):
            raise ValueError(f"need one prompt set per key ({len(keys)})")
        embeddings = []
        for key in keys:
            if key not in self._cache:
                raise KeyError(f"no cached embedding for {key!r}: call embed() first")
            embeddings.append(self._cache[key])
        prompts = [
            self._prompts(
                embedding,
                None if boxes is None else boxes[i],
                None if points is None else points[i],
                None if labels is None else labels[i],
            )
            for i, embedding in enumerate(embeddings)
        ]
        if len({tuple(p.shape[1:]) for _, p, _ in prompts if p is not None}) > 1:
            raise ValueError("every image's prompts need the same number of points (K)")
        decoded = self._decode(embeddings, prompts, multimask)
        if not host:
            return [(masks.bool(), scores.float()) for masks, scores in decoded]
        return [(masks.cpu().numpy(), scores.float().cpu().numpy()) for masks, scores in decoded]

    def _prompts(
        self, embedding: Embedding, boxes: np.ndarray | None, points: np.ndarray | None, labels: np.ndarray | None
    ) -> Prompts:
        """One image's prompts, checked and scaled to the encoder's input coordinates."""
        old_h, old_w = embedding.original_size
        new_h, new_w = embedding.input_size
        scale = torch.tensor([new_w / old_w, new_h / old_h], device=self.device)
        box_t = None if boxes is None else (self._floats(boxes).reshape(-1, 2, 2) * scale).reshape(-1, 4)
        point_t = None if points is None else self._floats(points) * scale
        label_t = None if labels is None else torch.as_tensor(np.asarray(labels), dtype=torch.long, device=self.device)
        if point_t is not None and label_t is not None and (point_t.ndim != 3 or label_t.shape != point_t.shape[:2]):
            shapes = f"{tuple(point_t.shape)} and {tuple(label_t.shape)}"
            raise ValueError(f"points must be (N, K, 2) and labels (N, K); got {shapes}")
        if box_t is not None and point_t is not None and len(box_t) != len(point_t):
            raise ValueError(f"{len(box_t)} boxes but {len(point_t)} point sets")
        return box_t, point_t, label_t

    def _floats(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array, dtype=np.float32), device=self.device)

    def _encode(self, images: list[Image.Image]) -> list[Embedding]:
        """Images -> their embeddings, in one image-encoder call."""
        raise NotImplementedError

    def _decode(
        self,
        embeddings: list[Embedding],
        prompts: list[Prompts],
        multimask: bool,
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each image's prompts (boxes, points, labels) in the encoder's input coordinates -> per image masks
        (N, H, W) bool and scores (N,); with ``multimask``, the best of SAM's three masks per prompt (see
        :func:`best_mask`)."""
        raise NotImplementedError


def best_mask(low_res: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Of each prompt's M candidate masks (N, M, h, w) with predicted IoUs (N, M), the one with the highest IoU:
    masks (N, 1, h, w) and scores (N,)."""
    best = scores.argmax(-1)
    rows = torch.arange(len(best), device=best.device)
    return low_res[rows, best][:, None], scores[rows, best]


def one_per_row(
    prompts: list[Prompts],
) -> tuple[list[int], torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Several images' prompts as one decoder batch with one prompt per row: each image's prompt count, then
    boxes (sum N, 1, 4), points (sum N, 1, K, 2) and labels (sum N, 1, K), each None where no image has them.
    Every prompt gets its image's embedding and goes through the decoder as an image of its own: what SAM does
    inside for (1, N), without padding images to the same N."""
    counts = [len(next(part for part in prompt if part is not None)) for prompt in prompts]
    boxes, points, labels = (
        None if parts[0] is None else torch.cat(parts)[:, None] for parts in zip(*prompts, strict=True)
    )
    return counts, boxes, points, labels


def decode_rows(
    model: Any,
    image_embeddings: Any,
    boxes: torch.Tensor | None,
    points: torch.Tensor | None,
    labels: torch.Tensor | None,
    multimask: bool,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One call of a transformers SAM-family model (SAM, SAM 3's interactive head) on image embeddings with one
    prompt per row (as :func:`one_per_row` gives them): each row's low-resolution mask logits (N, 1, h, w) and
    score (N,), the best of three with ``multimask``."""
    outputs = model(
        image_embeddings=image_embeddings,
        input_boxes=None if boxes is None else boxes.to(dtype),
        input_points=None if points is None else points.to(dtype),
        input_labels=labels,
        multimask_output=multimask,
    )
    return best_mask(outputs.pred_masks[:, 0], outputs.iou_scores[:, 0])


def repeat_rows(tensors: list[torch.Tensor], counts: list[int]) -> torch.Tensor:
    """Image ``i``'s (1, ...) tensor repeated ``counts[i]`` times along the batch: one image's expanded (no
    copy), several images' concatenated."""
    if len(tensors) == 1:
        return tensors[0].expand(counts[0], *tensors[0].shape[1:])
    return torch.cat([t.expand(n, *t.shape[1:]) for t, n in zip(tensors, counts, strict=True)])


def decode_levels(
    model: Any,
    levels: list[list[torch.Tensor]],
    embeddings: list[Embedding],
    prompts: list[Prompts],
    multimask: bool,
    dtype: torch.dtype,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """:meth:`CachedSegmenter._decode` for a SAM-family model fed multi-level features (SAM 2, SAM 3's interactive
    head): ``levels[i]`` are image ``i``'s (1, ...) feature levels, finest first. One decoder call, then each
    image's low-resolution logits resized to its original size and thresholded at 0 (no padding to undo)."""
    counts, boxes, points, labels = one_per_row(prompts)
    features = [repeat_rows(list(level), counts) for level in zip(*levels, strict=True)]
    low_res, scores = decode_rows(model, features, boxes, points, labels, multimask, dtype)
    return [
        (F.interpolate(masks.float(), size=e.original_size, mode="bilinear", align_corners=False)[:, 0] > 0, score)
        for e, masks, score in zip(embeddings, low_res.split(counts), scores.split(counts), strict=True)
    ]


class HFSam(CachedSegmenter):
    """SAM through transformers' ``SamModel`` and ``SamProcessor``."""

    def __init__(self, path: str | Path, device: str = "cpu", dtype: str = "float32", trust_remote_code: bool = False):
        super().__init__(path, device, dtype, trust_remote_code)
        self.processor = SamProcessor.from_pretrained(self.path, trust_remote_code=trust_remote_code)
        self.model = SamModel.from_pretrained(self.path, dtype=self.dtype, trust_remote_code=trust_remote_code)
        self.model.to(self.device).eval()

    def _encode(self, images: list[Image.Image]) -> list[Embedding]:
        inputs = self.processor(images=images, return_tensors="pt", **self.image_kwargs(self.processor))
        features = self.model.get_image_embeddings(inputs["pixel_values"].to(self.device, self.dtype))
        return [
            Embedding(features[i : i + 1], tuple(original.tolist()), tuple(resized.tolist()))
            for i, (original, resized) in enumerate(
                zip(inputs["original_sizes"], inputs["reshaped_input_sizes"], strict=True)
            )
        ]

    def _decode(
        self, embeddings: list[Embedding], prompts: list[Prompts], multimask: bool
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        counts, boxes, points, labels = one_per_row(prompts)
        features = torch.cat([e.features.expand(n, -1, -1, -1) for e, n in zip(embeddings, counts, strict=True)])
        low_res, scores = decode_rows(self.model, features, boxes, points, labels, multimask, self.dtype)
        pad = self.processor.image_processor.pad_size
        return [
            (upscale(masks.float(), (pad["height"], pad["width"]), e.input_size, e.original_size)[:, 0], score)
            for e, masks, score in zip(embeddings, low_res.split(counts), scores.split(counts), strict=True)
        ]


def upscale(
    low_res: torch.Tensor, pad: tuple[int, int], input_size: tuple[int, int], original_size: tuple[int, int]
) -> torch.Tensor:
    """SAM's low-resolution mask logits (N, C, h, w) -> masks (N, C, H, W) bool at the image's ``original_size``:
    the same values as ``SamProcessor.post_process_masks`` (logits resized to the ``pad`` square, cut to the
    resized image's ``input_size``, resized to ``original_size``, thresholded at 0), bit for bit.

    Where the pad square is a whole multiple ``k`` of the logits' size (1024 / 256 for SAM), only the rows and
    columns of logits that the cut keeps are resized: the same scale (1 / k exactly), so every kept value is the
    same, for a fraction of the work (a 4:3 image: 3/4 of the rows, and no 1024 x 1024 tensor per mask).
    """
    (h, w), keep = low_res.shape[-2:], list(pad)
    for axis, (size, padded, cut) in enumerate(zip((h, w), pad, input_size, strict=True)):
        k = padded // size
        if k * size == padded:
            # the last row the cut reads from is floor((cut - 0.5) / k - 0.5) + 1 <= cut // k + 1
            keep[axis] = min(size, cut // k + 2) * k
    rows, cols = keep[0] * h // pad[0], keep[1] * w // pad[1]
    resized = F.interpolate(low_res[..., :rows, :cols], keep, mode="bilinear", align_corners=False)
    resized = resized[..., : input_size[0], : input_size[1]]
    return F.interpolate(resized, original_size, mode="bilinear", align_corners=False) > 0
