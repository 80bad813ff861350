"""segment: a SAM mask for each region's box (docs/methods.md#positive-masks-and-sam-perturbed-negatives)."""

from __future__ import annotations

import numpy as np
from datasets import List, Value
from pydantic import Field

from syngen.columns import RLE, Column
from syngen.masks import encode_rle, share_in_box
from syngen.models.roles import Segmenter
from syngen.refs import ModelRef
from syngen.sample import Sample, load_image
from syngen.stages.base import ADDED_LATER, ModelStageConfig, Stage, Update, model_field

Predicted = tuple[np.ndarray, np.ndarray]  # an image's masks (boxes, H, W) and their scores


class SegmentConfig(ModelStageConfig):
    """Settings of the segment stage."""

    model: ModelRef = model_field(
        "tiny:segmenter",
        "SAM checkpoint, e.g. facebook/sam-vit-base (or an original .pth with backend segment-anything).",
    )
    min_mask_score: float | None = Field(
        None,
        description="Drop a region whose mask's SAM predicted IoU is below this (counted as filtered_mask_score); "
        "null keeps all.",
        json_schema_extra=ADDED_LATER,
    )
    max_outside_box: float = Field(
        1.0,
        ge=0,
        le=1,
        description="Drop a region when more than this share of its mask lies outside its box (a mask spilling far "
        "outside the detected box is usually the wrong object; counted as filtered_outside_box).",
        json_schema_extra=ADDED_LATER,
    )


class Segment(Stage[SegmentConfig, Segmenter]):
    """Masks for a sample's region boxes, single-mask output, SAM's predicted IoU as score.

    Needs ``image``, ``regions``. Replaces ``regions``, adding ``"mask"`` (COCO RLE at the image size) and
    ``"mask_score"`` to each; a region whose mask is empty, or fails the quality filters, is dropped. Adds
    ``segment_stats``: ``masks`` (kept), ``dropped_empty``, ``filtered_mask_score`` (below ``min_mask_score``),
    ``filtered_outside_box`` (more than ``max_outside_box`` of the mask outside the box). Each image of the batch
    is embedded once (under the sample's id, so later stages reuse the embedding on the same adapter), then the
    boxes of every image of the batch go through the mask decoder in one call (:meth:`process`); :meth:`finish`
    checks and encodes a sample's masks.

    Example::

        stage = Segment(SegmentConfig(), ctx)
        stage.outcomes([{"id": "x", "image": png, "regions": [{"phrase": "cat", "box": [4, 4, 60, 40]}]}], sam)
        # -> [{"regions": [{..., "mask": {"size": [H, W], "counts": "..."}, "mask_score": 0.9}],
        #      "segment_stats": {"masks": 1, "dropped_empty": 0, "filtered_mask_score": 0, ...}}]
    """

    name = "segment"
    needs = ("image", "regions")
    adds = ("regions", "segment_stats")
    publishes = {
        "regions": Column(
            List({"mask": RLE, "mask_score": Value("float32")}),
            "each region's SAM `mask` (COCO RLE: `size` [h, w], `counts`) and `mask_score` (SAM's predicted IoU)",
        )
    }
    Config = SegmentConfig
    role = "segmenter"
    default_backend = "sam"

    def process(self, samples: list[Sample], model: Segmenter) -> list[Predicted | None]:
        """Per sample, its boxes' masks and scores (None: no region)."""
        todo = [sample for sample in samples if sample["regions"]]
        keys = [sample["id"] for sample in todo]
        model.embed([load_image(sample) for sample in todo], keys)
        boxes = [np.array([region["box"] for region in s["regions"]], dtype=np.float32) for s in todo]
        predicted = dict(zip(keys, model.predict_batch(keys, boxes=boxes), strict=True)) if todo else {}
        return [predicted.get(sample["id"]) for sample in samples]

    def finish(self, sample: Sample, predicted: Predicted | None) -> Update:
        """The sample's regions with their masks (``predicted``: masks and scores of its boxes, None for none)."""
        regions = sample["regions"]
        stats = dict.fromkeys(("masks", "dropped_empty", "filtered_mask_score", "filtered_outside_box"), 0)
        kept = []
        if predicted is not None:
            masks, scores = predicted
            for region, mask, score in zip(regions, masks, scores, strict=True):
                refused = self._refusal(mask, float(score), region["box"])
                if refused:
                    stats[refused] += 1
                else:
                    kept.append({**region, "mask": encode_rle(mask), "mask_score": float(score)})
        stats["masks"] = len(kept)
        return {"regions": kept, "segment_stats": stats}

    def _refusal(self, mask: np.ndarray, score: float, box: list[float]) -> str | None:
        """The stat a region's mask is refused under, or None when it is kept."""
        if not mask.any():
            return "dropped_empty"
        if self.config.min_mask_score is not None and score < self.config.min_mask_score:
            return "filtered_mask_score"
        if 1 - share_in_box(mask, box) > self.config.max_outside_box:
            return "filtered_outside_box"
        return None
