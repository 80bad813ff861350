"""Grounder with masks: SAM 3 (transformers' ``Sam3Model``; real checkpoint facebook/sam3, gated under Meta's
SAM License), whose interactive head (``Sam3TrackerModel``) also serves as the segmenter of point and box prompts.

One image embedding serves everything asked of an image: :meth:`Sam3.embed` runs the ViT backbone once per image
and both necks on its output (the detector's and the interactive head's, as SAM 3 itself shares the backbone);
:meth:`Sam3.ground` then runs every phrase of every cached image through the detector in one forward (the text
batched, the image features repeated per phrase), and ``predict_batch`` (the negatives stage's point prompts)
runs the interactive head on the same cache.

Images are resized to the checkpoint's square input and normalised as its ``preprocessor_config.json`` says, in
torch (transformers' ``Sam3ImageProcessor`` needs torchvision).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import AutoTokenizer, Sam3Model, Sam3TrackerModel
from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

from syngen.models.base import timed
from syngen.models.roles import Instance
from syngen.models.sam_hf import CachedSegmenter, Embedding, Prompts, decode_levels, repeat_rows


@dataclass
class Sam3Embedding(Embedding):
    """One image's backbone output (``features``, (1, tokens, C)) and what each head reads of it."""

    detector: tuple[list[torch.Tensor], list[torch.Tensor]]  # the detector's FPN levels and position encodings
    tracker: list[torch.Tensor]  # the interactive head's three feature levels, (1, C_l, h_l, w_l)


class Sam3(CachedSegmenter):
    """SAM 3: phrases -> every instance's box, mask and score (:meth:`ground`); boxes and points -> masks (the
    :class:`~syngen.models.sam_hf.CachedSegmenter` calls, on its interactive head)."""

    max_text_tokens = 32  # SAM 3's text encoder reads 32 positions

    def __init__(self, path: str | Path, device: str = "cpu", dtype: str = "float32", trust_remote_code: bool = False):
        super().__init__(path, device, dtype, trust_remote_code)
        load = {"dtype": self.dtype, "trust_remote_code": trust_remote_code}
        self.model = Sam3Model.from_pretrained(self.path, **load).to(self.device).eval()
        # facebook/sam3 holds both heads in one checkpoint; the tiny twin keeps the interactive head in tracker/
        folder = Path(self.path) / "tracker"
        self.tracker = Sam3TrackerModel.from_pretrained(folder if folder.is_dir() else self.path, **load)
        self.tracker.vision_encoder.backbone = self.model.vision_encoder.backbone  # one ViT for both heads
        self.tracker.to(self.device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, trust_remote_code=trust_remote_code)
        config = json.loads((Path(self.path) / "preprocessor_config.json").read_text())
        self.input_size = (int(config["size"]["height"]), int(config["size"]["width"]))
        self.rescale = float(config.get("rescale_factor", 1 / 255))
        self.mean = torch.tensor(config["image_mean"], device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(config["image_std"], device=self.device).view(1, 3, 1, 1)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text)["input_ids"])

    @timed
    def ground(self, keys: list[str], phrases: list[list[str]], threshold: float) -> list[list[list[Instance]]]:
        """Per cached image ``keys[i]``, per phrase of ``phrases[i]``, its instances whose score (query
        probability times presence probability, SAM 3's own gate) is above ``threshold``, best first: box (xyxy
        pixels), mask (H, W) bool at the image's size, score. Every phrase of every image goes through the
        detector in one forward; raises KeyError for a key never embedded."""
        embeddings = [self._cached(key) for key in keys]
        counts = [len(p) for p in phrases]
        flat = [phrase for p in phrases for phrase in p]
        if not flat:
            return [[] for _ in keys]
        text = self.tokenizer(
            flat, padding="max_length", max_length=self.max_text_tokens, truncation=True, return_tensors="pt"
        ).to(self.device)
        levels, positions = (
            [
                repeat_rows([e.detector[part][level] for e in embeddings], counts)
                for level in range(len(embeddings[0].detector[part]))
            ]
            for part in (0, 1)
        )
        outputs = self.model(
            vision_embeds=Sam3VisionEncoderOutput(fpn_hidden_states=levels, fpn_position_encoding=positions),
            input_ids=text["input_ids"],
            attention_mask=text["attention_mask"],
        )
        scores = outputs.pred_logits.sigmoid() * outputs.presence_logits.sigmoid()  # (phrases, queries)
        # two copies to the host for the whole call: the scores and boxes, then the masks of the kept queries
        host = torch.cat([scores[..., None], outputs.pred_boxes], -1).float().cpu().numpy()
        kept = host[..., 0] > threshold
        picked = outputs.pred_masks.flatten(0, 1)[torch.as_tensor(np.flatnonzero(kept), device=self.device)]
        starts = np.cumsum([0, *counts])
        per_image = [int(kept[starts[i] : starts[i + 1]].sum()) for i in range(len(keys))]
        resized = [
            F.interpolate(masks[:, None].float(), size=e.original_size, mode="bilinear", align_corners=False)[:, 0] > 0
            for masks, e in zip(picked.split(per_image), embeddings, strict=True)
        ]
        host_masks = torch.cat([masks.flatten() for masks in resized]).cpu().numpy()
        result: list[list[list[Instance]]] = []
        offset = 0
        for i, embedding in enumerate(embeddings):
            height, width = embedding.original_size
            per_phrase = []
            for row, keep in zip(host[starts[i] : starts[i + 1]], kept[starts[i] : starts[i + 1]], strict=True):
                found = []
                for query in row[keep]:
                    mask = host_masks[offset : offset + height * width].reshape(height, width)
                    offset += height * width
                    box = (query[1:] * [width, height, width, height]).tolist()
                    found.append(Instance(box=box, mask=mask, score=float(query[0])))
                per_phrase.append(sorted(found, key=lambda instance: -instance["score"]))
            result.append(per_phrase)
        return result

    def _cached(self, key: str) -> Sam3Embedding:
        if key not in self._cache:
            raise KeyError(f"no cached embedding for {key!r}: call embed() first")
        return cast(Sam3Embedding, self._cache[key])

    def _encode(self, images: list[Image.Image]) -> list[Embedding]:
        pixels = torch.cat([self._pixels(image) for image in images])
        vision = self.model.get_vision_features(pixel_values=pixels)
        tracker = self._tracker_levels(vision.last_hidden_state)
        return [
            Sam3Embedding(
                features=vision.last_hidden_state[i : i + 1],
                original_size=(image.height, image.width),
                input_size=self.input_size,
                detector=(
                    [level[i : i + 1] for level in vision.fpn_hidden_states],
                    [level[i : i + 1] for level in vision.fpn_position_encoding],
                ),
                tracker=[level[i : i + 1] for level in tracker],
            )
            for i, image in enumerate(images)
        ]

    def _pixels(self, image: Image.Image) -> torch.Tensor:
        """(1, 3, h, w): the image resized (bilinear, antialiased) to the input square, rescaled and normalised."""
        array = torch.from_numpy(np.asarray(image.convert("RGB")).copy()).to(self.device)
        resized = F.interpolate(
            array.permute(2, 0, 1)[None].float(), size=self.input_size, mode="bilinear", antialias=True
        )
        return ((resized * self.rescale - self.mean) / self.std).to(self.dtype)

    def _tracker_levels(self, hidden: torch.Tensor) -> list[torch.Tensor]:
        """The interactive head's image features from the backbone's output, as SAM 3's video model computes them
        for its tracker: its own neck, the two finer levels projected by its mask decoder, and the "no memory"
        embedding added to the coarsest (a single image has no past frames)."""
        patch = self.model.config.vision_config.backbone_config.patch_size
        height, width = self.input_size[0] // patch, self.input_size[1] // patch
        spatial = hidden.view(len(hidden), height, width, -1).permute(0, 3, 1, 2)
        levels, _ = self.tracker.vision_encoder.neck(spatial)
        decoder = self.tracker.mask_decoder
        coarse = levels[2] + self.tracker.no_memory_embedding.view(1, -1, 1, 1)
        return [decoder.conv_s0(levels[0]), decoder.conv_s1(levels[1]), coarse]

    def _decode(
        self, embeddings: list[Embedding], prompts: list[Prompts], multimask: bool
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        levels = [cast(Sam3Embedding, e).tracker for e in embeddings]
        return decode_levels(self.tracker, levels, embeddings, prompts, multimask, self.dtype)
