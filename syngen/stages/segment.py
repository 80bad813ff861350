"""segment: a SAM mask for each region's box (METHODS.md §2, positive masks)."""

from __future__ import annotations

import numpy as np
from datasets import List, Value
from pydantic import Field

from syngen.export.schema import RLE, Column
from syngen.masks import encode_rle
from syngen.sample import Sample, load_image
from syngen.stages.base import ModelRef, Result, Stage, StageConfig


class SegmentConfig(StageConfig):
    """Settings of the segment stage."""

    model: ModelRef = Field(
        default_factory=lambda: ModelRef(id="tiny:segmenter"),
        description="SAM checkpoint, e.g. facebook/sam-vit-base (or an original .pth with backend segment-anything).",
    )


class Segment(Stage):
    """Masks for a sample's region boxes, single-mask output, SAM's predicted IoU as score.

    Needs ``image``, ``regions``. Replaces ``regions``, adding ``"mask"`` (COCO RLE at the image size) and
    ``"mask_score"`` to each; a region whose mask is empty is dropped. Adds ``segment_stats``: ``masks`` (kept),
    ``dropped_empty``. Each image of the batch is embedded once (under the sample's id, so later stages reuse the
    embedding on the same adapter), then all its boxes go through the mask decoder in one call.

    Example::

        stage = Segment(SegmentConfig(), ctx)
        stage.model = segmenter  # the runner loads it
        stage.process([{"id": "x", "image": png, "regions": [{"phrase": "cat", "box": [4, 4, 60, 40], ...}]}])
        # -> [{"regions": [{..., "mask": {"size": [H, W], "counts": "..."}, "mask_score": 0.9}],
        #      "segment_stats": {"masks": 1, "dropped_empty": 0}}]
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
    default_backend = "sam"

    def process(self, samples: list[Sample]) -> list[Result]:
        todo = [sample for sample in samples if sample["regions"]]
        self.model.embed([load_image(sample) for sample in todo], [sample["id"] for sample in todo])
        return [self._segment(sample) for sample in samples]

    def _segment(self, sample: Sample) -> Result:
        regions = sample["regions"]
        kept = []
        if regions:
            boxes = np.array([region["box"] for region in regions], dtype=np.float32)
            masks, scores = self.model.predict(sample["id"], boxes=boxes)
            kept = [
                {**region, "mask": encode_rle(mask), "mask_score": float(score)}
                for region, mask, score in zip(regions, masks, scores)
                if mask.any()
            ]
        return {"regions": kept, "segment_stats": {"masks": len(kept), "dropped_empty": len(regions) - len(kept)}}
