"""segment: a SAM mask for each region's box (METHODS.md §2, positive masks)."""

from __future__ import annotations

import numpy as np

from syngen.masks import encode_rle
from syngen.models.roles import Segmenter
from syngen.refs import ModelRef
from syngen.sample import Sample, load_image
from syngen.stages.base import ModelStageConfig, Result, Stage, model_field


class SegmentConfig(ModelStageConfig):
    """Settings of the segment stage."""

    model: ModelRef = model_field(
        "tiny:segmenter",
        "SAM checkpoint, e.g. facebook/sam-vit-base (or an original .pth with backend segment-anything).",
    )


class Segment(Stage[SegmentConfig, Segmenter]):
    """Masks for a sample's region boxes, single-mask output, SAM's predicted IoU as score.

    Needs ``image``, ``regions``. Replaces ``regions``, adding ``"mask"`` (COCO RLE at the image size) and
    ``"mask_score"`` to each; a region whose mask is empty is dropped. Adds ``segment_stats``: ``masks`` (kept),
    ``dropped_empty``. Each image of the batch is embedded once (under the sample's id, so later stages reuse the
    embedding on the same adapter), then all its boxes go through the mask decoder in one call.

    Example::

        stage = Segment(SegmentConfig(), ctx)
        stage.process([{"id": "x", "image": png, "regions": [{"phrase": "cat", "box": [4, 4, 60, 40], ...}]}], sam)
        # -> [{"regions": [{..., "mask": {"size": [H, W], "counts": "..."}, "mask_score": 0.9}],
        #      "segment_stats": {"masks": 1, "dropped_empty": 0}}]
    """

    name = "segment"
    needs = ("image", "regions")
    adds = ("regions", "segment_stats")
    Config = SegmentConfig
    role = "segmenter"
    default_backend = "sam"

    def process(self, samples: list[Sample], model: Segmenter) -> list[Result]:
        todo = [sample for sample in samples if sample["regions"]]
        model.embed([load_image(sample) for sample in todo], [sample["id"] for sample in todo])
        return [self._segment(model, sample) for sample in samples]

    def _segment(self, model: Segmenter, sample: Sample) -> Result:
        regions = sample["regions"]
        kept = []
        if regions:
            boxes = np.array([region["box"] for region in regions], dtype=np.float32)
            masks, scores = model.predict(sample["id"], boxes=boxes)
            kept = [
                {**region, "mask": encode_rle(mask), "mask_score": float(score)}
                for region, mask, score in zip(regions, masks, scores, strict=True)
                if mask.any()
            ]
        return {"regions": kept, "segment_stats": {"masks": len(kept), "dropped_empty": len(regions) - len(kept)}}
