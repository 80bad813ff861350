"""The segment stage: one embedding per image, one decoder call per image, RLE masks at the image size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from syngen.models.loading import build_tiny
from syngen.models.sam_hf import HFSam
from syngen.sample import image_bytes
from syngen.stages.base import Context
from syngen.stages.segment import Segment, SegmentConfig
from tests.fakes import FakeSegmenter
from tests.helpers import draw_shapes


@pytest.fixture(scope="module")
def twin() -> Path:
    return build_tiny("segmenter")


def region(phrase: str, box: list[float]) -> dict[str, Any]:
    return {"phrase": phrase, "box": box, "box_score": 0.8}


def sample(n: int, size: tuple[int, int], regions: list[dict]) -> dict[str, Any]:
    return {"id": f"s{n}", "image": image_bytes(draw_shapes(size, seed=n)), "regions": regions}


def run(model: Any, samples: list[dict]) -> list:
    stage = Segment(SegmentConfig(), Context(recipe_dir=Path(".")))
    return stage.process(samples, model)


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """Decoded with pycocotools directly (not syngen.masks), as a cross-check."""
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


def test_masks_at_the_image_size_one_embedding_per_image(twin: Path) -> None:
    sam = HFSam(twin)
    decoder_calls = []
    sam.model.mask_decoder.register_forward_hook(lambda *args: decoder_calls.append(1))
    sizes = [(128, 96), (90, 140), (100, 100)]
    samples = [
        sample(0, sizes[0], [region("red box", [10, 10, 60, 50]), region("ring", [70, 30, 120, 90])]),
        sample(1, sizes[1], [region(f"cat {i}", [i, i, 40 + i, 60 + 2 * i]) for i in range(16)]),
        sample(2, sizes[2], []),
    ]
    results = run(sam, samples)
    assert sam.encoder_calls == 2  # the sample without regions is not embedded
    assert len(decoder_calls) == 2  # all boxes of an image in one decoder call
    assert results[2] == {"regions": [], "segment_stats": {"masks": 0, "dropped_empty": 0}}
    for (width, height), s, result in zip(sizes, samples, results):
        regions = result["regions"]
        assert result["segment_stats"] == {"masks": len(regions), "dropped_empty": len(s["regions"]) - len(regions)}
        for before, after in zip(s["regions"], regions):
            mask = rle_to_mask(after["mask"])
            assert mask.shape == (height, width) and mask.any()
            assert isinstance(after["mask_score"], float)
            assert {key: after[key] for key in before} == before
    # Each RLE holds exactly the adapter's mask, predicted again on the embedding cached under the sample id.
    masks, scores = sam.predict("s1", boxes=np.array([r["box"] for r in samples[1]["regions"]], dtype=np.float32))
    assert masks.any(axis=(1, 2)).all() and len(results[1]["regions"]) == 16  # none dropped: the zip below aligns
    for after, mask, score in zip(results[1]["regions"], masks, scores):
        np.testing.assert_array_equal(rle_to_mask(after["mask"]), mask)
        assert after["mask_score"] == pytest.approx(float(score))
    assert sam.encoder_calls == 2


def test_empty_masks_are_dropped_and_counted() -> None:
    boxes = {"a": [0, 0, 9, 9], "b": [-1, 0, 9, 9], "c": [5, 5, 9, 9], "d": [-2, 0, 9, 9]}
    regions = [region(phrase, box) for phrase, box in boxes.items()]
    segmenter = FakeSegmenter()
    [result] = run(segmenter, [sample(0, (128, 96), regions)])
    assert [r["phrase"] for r in result["regions"]] == ["a", "c"]
    assert [r["mask_score"] for r in result["regions"]] == pytest.approx([0.1, 0.6333333])
    assert result["segment_stats"] == {"masks": 2, "dropped_empty": 2}
    assert segmenter.embedded == ["s0"]
