"""SAM 3 on its tiny twin: the twin itself, and the ``sam3`` grounder-with-masks adapter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, Sam3Model

from syngen.models.loading import build_tiny, load
from syngen.models.roles import InstanceGrounder, Segmenter
from syngen.models.sam3 import Sam3
from syngen.refs import ModelRef
from tests.helpers import Calls, draw_shapes


@pytest.fixture(scope="module")
def twin() -> Path:
    return build_tiny("sam3")


def pixels(twin: Path, seed: int) -> torch.Tensor:
    """The twin's input for a drawn picture, normalised as its preprocessor config says."""
    config = json.loads((twin / "preprocessor_config.json").read_text())
    size = config["size"]["height"], config["size"]["width"]
    image = np.asarray(draw_shapes((size[1], size[0]), seed=seed), dtype=np.float32) / 255
    mean, std = np.array(config["image_mean"]), np.array(config["image_std"])
    return torch.from_numpy(((image - mean) / std).transpose(2, 0, 1)[None]).float()


def test_twin_outputs_every_query_and_sees_the_image(twin: Path) -> None:
    model = Sam3Model.from_pretrained(twin).eval()
    text = AutoTokenizer.from_pretrained(twin)(["red circle"], padding="max_length", max_length=32, return_tensors="pt")
    with torch.no_grad():
        first, second = (model(pixel_values=pixels(twin, seed), **text) for seed in (0, 1))
    assert first.pred_masks.shape[:2] == first.pred_boxes.shape[:2] == first.pred_logits.shape == (1, 20)
    assert first.presence_logits.shape == (1, 1)
    # The vision tower sees the image: a different picture changes the masks by more than their own scale / 10.
    change = (first.pred_masks - second.pred_masks).abs().mean()
    assert change > first.pred_masks.abs().mean() / 10


@pytest.fixture(scope="module")
def sam3(twin: Path) -> Sam3:
    return Sam3(twin)


IMAGES = {"landscape": draw_shapes((128, 96)), "portrait": draw_shapes((90, 140), seed=2)}
PHRASES = {"landscape": ["red circle", "blue box", "cat"], "portrait": ["dog"]}


def test_ground_runs_every_phrase_on_one_embedding_per_image(twin: Path) -> None:
    sam3 = Sam3(twin)  # its own counters
    backbone = Calls(sam3.model.vision_encoder.backbone)
    detector = Calls(sam3.model.detr_decoder)
    sam3.embed(list(IMAGES.values()), list(IMAGES))
    found = sam3.ground(list(IMAGES), list(PHRASES.values()), 0.0)
    sam3.embed(list(IMAGES.values()), list(IMAGES))  # cached: no second pass through the backbone
    sam3.predict("landscape", boxes=np.array([[10, 10, 60, 50]], dtype=np.float32))  # negatives: the same cache
    assert backbone.batches == [2] and sam3.encoder_calls == 2
    assert len(detector.batches) == 1  # all four phrases of both images in one detector call
    assert [len(per_phrase) for per_phrase in found] == [3, 1]
    for key, per_phrase in zip(IMAGES, found, strict=True):
        width, height = IMAGES[key].size
        for instances in per_phrase:
            assert len(instances) == 20  # threshold 0: every query
            assert [i["score"] for i in instances] == sorted((i["score"] for i in instances), reverse=True)
            for instance in instances:
                assert instance["mask"].shape == (height, width) and instance["mask"].dtype == bool
                assert 0 <= instance["box"][0] <= instance["box"][2] <= width


def test_ground_copies_to_the_host_twice_per_call(sam3: Sam3, monkeypatch: pytest.MonkeyPatch) -> None:
    # no per-image, per-phrase or per-instance syncs: the scores and boxes of the call, then its kept masks
    sam3.embed(list(IMAGES.values()), list(IMAGES))
    copies, cpu = [], torch.Tensor.cpu

    def counted(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        copies.append(tuple(tensor.shape))
        return cpu(tensor, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "cpu", counted)
    found = sam3.ground(list(IMAGES), list(PHRASES.values()), 0.0)
    pixels = sum(20 * len(PHRASES[key]) * image.width * image.height for key, image in IMAGES.items())
    assert copies == [(4, 20, 5), (pixels,)]
    assert sum(len(instances) for per_phrase in found for instances in per_phrase) == 80


def test_ground_equals_sam3_alone_per_phrase(sam3: Sam3, twin: Path) -> None:
    # The reference: Sam3Model's own forward from pixels, one phrase at a time, scored and thresholded as SAM 3's
    # post-processing does (query probability times presence probability).
    image = IMAGES["portrait"]
    sam3.embed([image], ["portrait"])
    [batched] = sam3.ground(["portrait"], [PHRASES["landscape"]], 0.2)
    for phrase, instances in zip(PHRASES["landscape"], batched, strict=True):
        text = sam3.tokenizer([phrase], padding="max_length", max_length=32, return_tensors="pt")
        with torch.no_grad():
            out = sam3.model(pixel_values=sam3._pixels(image), **text)
        scores = (out.pred_logits.sigmoid() * out.presence_logits.sigmoid())[0]
        keep = scores > 0.2
        expected = sorted(scores[keep].tolist(), reverse=True)
        assert [i["score"] for i in instances] == pytest.approx(expected, abs=1e-5)
        masks = torch.nn.functional.interpolate(out.pred_masks[0, keep][:, None], size=(140, 90), mode="bilinear")
        order = scores[keep].argsort(descending=True)
        for instance, mask in zip(instances, (masks[order, 0] > 0).numpy(), strict=True):
            assert (instance["mask"] == mask).mean() > 0.999


@pytest.mark.parametrize("threshold, expected", [(0.0, 20), (0.99, 0)], ids=["all-queries", "above-every-score"])
def test_threshold_gates_instances(sam3: Sam3, threshold: float, expected: int) -> None:
    sam3.embed([IMAGES["landscape"]], ["landscape"])
    [[instances]] = sam3.ground(["landscape"], [["red circle"]], threshold)
    assert len(instances) == expected


def test_presence_gates_every_instance(sam3: Sam3, monkeypatch: pytest.MonkeyPatch) -> None:
    # A phrase SAM 3 says is absent (presence logit -20) has no instance at any usable threshold.
    forward = sam3.model.forward

    def absent(*args: Any, **kwargs: Any) -> Any:
        out = forward(*args, **kwargs)
        out.presence_logits = torch.full_like(out.presence_logits, -20.0)
        return out

    monkeypatch.setattr(sam3.model, "forward", absent)
    sam3.embed([IMAGES["landscape"]], ["landscape"])
    assert sam3.ground(["landscape"], [["red circle", "cat"]], 1e-6) == [[[], []]]


def test_interactive_head_segments_boxes_and_points(sam3: Sam3) -> None:
    sam3.embed([IMAGES["portrait"]], ["portrait"])
    masks, scores = sam3.predict(
        "portrait",
        points=np.array([[[30, 30]], [[60, 100]]], dtype=np.float32),
        labels=np.array([[1], [1]]),
        multimask=True,
    )
    assert masks.shape == (2, 140, 90) and masks.dtype == bool and scores.shape == (2,)
    [(batched, _)] = sam3.predict_batch(
        ["portrait"],
        points=[np.array([[[30, 30]], [[60, 100]]], dtype=np.float32)],
        labels=[np.array([[1], [1]])],
        multimask=True,
    )
    assert (batched == masks).all()


def test_interactive_head_matches_sam3_tracker_from_pixels(sam3: Sam3) -> None:
    # The reference: Sam3TrackerModel's own forward from pixels (its backbone is the detector's), boxes scaled to
    # the input square as its processor does, masks upsampled to the image.
    image = IMAGES["portrait"]
    boxes = np.array([[10, 20, 60, 100], [0, 0, 90, 140]], dtype=np.float32)
    sam3.embed([image], ["portrait"])
    masks, scores = sam3.predict("portrait", boxes=boxes)
    scale = np.array([224 / 90, 224 / 140] * 2, dtype=np.float32)
    with torch.no_grad():
        out = sam3.tracker(
            pixel_values=sam3._pixels(image), input_boxes=torch.from_numpy(boxes * scale)[None], multimask_output=False
        )
    expected = torch.nn.functional.interpolate(out.pred_masks[0], size=(140, 90), mode="bilinear")[:, 0] > 0
    assert scores == pytest.approx(out.iou_scores[0, :, 0].numpy(), abs=1e-5)
    assert (masks == expected.numpy()).mean() > 0.999


def test_unknown_key_names_embed(sam3: Sam3) -> None:
    with pytest.raises(KeyError, match="call embed"):
        sam3.ground(["never"], [["cat"]], 0.5)


def test_loads_as_a_grounder_that_also_segments(twin: Path) -> None:
    adapter, _ = load(ModelRef(id="tiny:sam3"), "grounding-dino", "cpu", "float32")
    assert isinstance(adapter, InstanceGrounder) and isinstance(adapter, Segmenter)
