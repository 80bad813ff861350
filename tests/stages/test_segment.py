"""The segment stage: one embedding per image, one decoder call per image, RLE masks at the image size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pydantic import ValidationError

from syngen.devtools.fakes import FakeSegmenter
from syngen.models.loading import build_tiny
from syngen.models.sam_hf import HFSam
from syngen.sample import image_bytes
from syngen.stages.base import Context
from syngen.stages.segment import Segment, SegmentConfig
from syngen.store import to_json
from tests.helpers import draw_shapes


@pytest.fixture(scope="module")
def twin() -> Path:
    return build_tiny("segmenter")


NOTHING_DROPPED = {"dropped_empty": 0, "filtered_mask_score": 0, "filtered_outside_box": 0}


def region(phrase: str, box: list[float]) -> dict[str, Any]:
    return {"phrase": phrase, "box": box, "box_score": 0.8}


def sample(n: int, size: tuple[int, int], regions: list[dict]) -> dict[str, Any]:
    return {"id": f"s{n}", "image": image_bytes(draw_shapes(size, seed=n)), "regions": regions}


def run(model: Any, samples: list[dict]) -> list:
    stage = Segment(SegmentConfig(), Context(recipe_dir=Path(".")))
    return stage.outcomes(samples, model)


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """Decoded with pycocotools directly (not syngen.masks), as a cross-check."""
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


def test_masks_at_the_image_size_one_embedding_per_image_one_decoder_call(twin: Path) -> None:
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
    assert len(decoder_calls) == 1  # all boxes of all images of the batch in one decoder call
    assert results[2] == {"regions": [], "segment_stats": {"masks": 0, **NOTHING_DROPPED}}
    for (width, height), s, result in zip(sizes, samples, results, strict=True):
        regions = result["regions"]
        dropped = {"dropped_empty": len(s["regions"]) - len(regions)}
        assert result["segment_stats"] == {"masks": len(regions), **NOTHING_DROPPED, **dropped}
        for before, after in zip(s["regions"], regions, strict=True):
            mask = rle_to_mask(after["mask"])
            assert mask.shape == (height, width) and mask.any()
            assert isinstance(after["mask_score"], float)
            assert {key: after[key] for key in before} == before
    # Each RLE holds exactly the adapter's mask, predicted again on the embedding cached under the sample id.
    masks, scores = sam.predict("s1", boxes=np.array([r["box"] for r in samples[1]["regions"]], dtype=np.float32))
    assert masks.any(axis=(1, 2)).all() and len(results[1]["regions"]) == 16  # none dropped: the zip below aligns
    for after, mask, score in zip(results[1]["regions"], masks, scores, strict=True):
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
    assert result["segment_stats"] == {"masks": 2, **NOTHING_DROPPED, "dropped_empty": 2}
    assert segmenter.embedded == ["s0"]


class ScriptedSegmenter:
    """Answers every box prompt with the given masks and scores."""

    def __init__(self, masks: list[np.ndarray], scores: list[float]) -> None:
        self.masks, self.scores = np.stack(masks), np.array(scores, dtype=np.float32)

    def embed(self, images: list, keys: list[str]) -> None:
        pass

    def predict_batch(self, keys: list[str], boxes: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        assert all(len(b) == len(self.masks) for b in boxes)
        return [(self.masks, self.scores) for _ in keys]


def _columns(start: int, stop: int) -> np.ndarray:
    """A (96, 128) mask of rows 0..47 and columns start..stop-1."""
    mask = np.zeros((96, 128), dtype=bool)
    mask[:48, start:stop] = True
    return mask


BOX = [0.0, 0.0, 64.0, 48.0]
# masks of 64 columns with 0, 16, 32 and 64 of them right of the box
INSIDE, QUARTER_OUT, HALF_OUT, ALL_OUT = _columns(0, 64), _columns(16, 80), _columns(32, 96), _columns(64, 128)


@pytest.mark.parametrize(
    ("limits", "scores", "kept", "stats"),
    [
        pytest.param({}, [-0.2, 0.1, 0.5, 0.9], ["a", "b", "c", "d"], {}, id="defaults-keep-all"),
        pytest.param(
            {"min_mask_score": 0.5}, [-0.2, 0.1, 0.5, 0.9], ["c", "d"], {"filtered_mask_score": 2}, id="min-score"
        ),
        pytest.param(
            {"max_outside_box": 0.25},
            [0.9] * 4,
            ["a", "b"],
            {"filtered_outside_box": 2},
            id="outside-box-edge-kept",
        ),
        pytest.param(
            {"max_outside_box": 0.5, "min_mask_score": 0.2},
            [0.1, 0.9, 0.9, 0.1],
            ["b", "c"],
            {"filtered_mask_score": 2},
            id="score-checked-first",
        ),
        pytest.param({"max_outside_box": 0.0}, [0.9] * 4, ["a"], {"filtered_outside_box": 3}, id="all-inside"),
    ],
)
def test_quality_filters_drop_and_count(limits: dict, scores: list[float], kept: list[str], stats: dict) -> None:
    segmenter = ScriptedSegmenter([INSIDE, QUARTER_OUT, HALF_OUT, ALL_OUT], scores)
    stage = Segment(SegmentConfig(**limits), Context(recipe_dir=Path(".")))
    [result] = stage.outcomes([sample(0, (128, 96), [region(p, BOX) for p in "abcd"])], segmenter)
    assert [r["phrase"] for r in result["regions"]] == kept
    assert result["segment_stats"] == {"masks": len(kept), **NOTHING_DROPPED, **stats}


@pytest.mark.parametrize("limits", [{"max_outside_box": 1.5}, {"max_outside_box": -0.1}], ids=["above-1", "below-0"])
def test_quality_filter_settings_are_validated(limits: dict) -> None:
    with pytest.raises(ValidationError):
        SegmentConfig(**limits)


def test_fingerprint_at_defaults_is_the_one_stored_before_the_filters_existed() -> None:
    # recorded on ec140c1 (before min_mask_score / max_outside_box): stored results must survive the upgrade
    before = (
        '{"stage":"segment","config":{"model":{"id":"facebook/sam-vit-base","revision":null,"backend":null,'
        '"trust_remote_code":false}}}'
    )
    stage = Segment(SegmentConfig(model="facebook/sam-vit-base"), Context(recipe_dir=Path(".")))
    assert to_json(stage.fingerprint()) == before
    for changed in ({"min_mask_score": 0.0}, {"max_outside_box": 0.5}):
        other = Segment(SegmentConfig(model="facebook/sam-vit-base", **changed), Context(recipe_dir=Path(".")))
        assert to_json(other.fingerprint()) != before
