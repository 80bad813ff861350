"""The transformers SAM adapter on its tiny twin: cached embeddings, batched prompts, masks at the image size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import SamImageProcessorPil

from syngen.models.loading import build_tiny
from syngen.models.sam_hf import HFSam, upscale
from syngen.models.twins.sam import build_sam
from tests.helpers import Calls, draw_shapes

BOXES = np.array([[10, 10, 60, 50], [70, 30, 120, 90], [0, 0, 128, 96]], dtype=np.float32)
POINTS = np.array([[[30, 30], [50, 40]], [[90, 60], [75, 35]], [[5, 5], [64, 48]]], dtype=np.float32)
LABELS = np.array([[1, 0], [1, 1], [0, 1]])


@pytest.fixture(scope="module")
def twin() -> Path:
    return build_tiny("segmenter")


@pytest.fixture
def sam(twin: Path) -> HFSam:
    return HFSam(twin)


@pytest.mark.parametrize(
    "prompts",
    [
        {"boxes": BOXES},
        {"points": POINTS[:, :1], "labels": LABELS[:, :1]},
        {"boxes": BOXES, "points": POINTS, "labels": LABELS},
    ],
    ids=["boxes", "one-point-each", "boxes-and-points"],
)
@pytest.mark.parametrize("size", [(128, 96), (90, 140)], ids=["landscape", "portrait"])
def test_predict_shapes_types_and_size(sam: HFSam, prompts: dict, size: tuple[int, int]) -> None:
    sam.embed([draw_shapes(size)], ["img"])
    decoder = Calls(sam.model.mask_decoder)
    masks, scores = sam.predict("img", **prompts)
    assert decoder.batches and len(decoder.batches) == 1  # all three prompts in one decoder call
    assert masks.shape == (3, size[1], size[0]) and masks.dtype == bool
    assert scores.shape == (3,) and scores.dtype == np.float32
    assert masks.any()


def test_predict_matches_the_transformers_reference_path(sam: HFSam) -> None:
    # The full SamModel forward from pixels, with the processor scaling the prompts: the adapter must agree.
    image = draw_shapes((90, 140), seed=3)
    boxes = BOXES[:2]
    points = POINTS[:2]
    sam.embed([image], ["img"])
    masks, scores = sam.predict("img", boxes=boxes, points=points, labels=LABELS[:2])
    inputs = sam.processor(
        images=image,
        input_boxes=[boxes.tolist()],
        input_points=[points.tolist()],
        input_labels=[LABELS[:2].tolist()],
        return_tensors="pt",
    )
    with torch.no_grad():
        out = sam.model(**inputs, multimask_output=False)
    sizes = inputs["original_sizes"], inputs["reshaped_input_sizes"]
    logits = sam.processor.post_process_masks(out.pred_masks, *sizes, binarize=False)[0][:, 0].numpy()
    # the two paths round differently: equal wherever the reference logit is not within float noise of 0 (the
    # twin's logits are ~1e-5, so the noise band is relative to their scale)
    clear = np.abs(logits) > 1e-3 * np.abs(logits).max()
    np.testing.assert_array_equal(masks[clear], (logits > 0)[clear])
    assert clear.mean() > 0.99
    np.testing.assert_allclose(scores, out.iou_scores[0, :, 0].numpy(), rtol=1e-5, atol=1e-6)


def test_multimask_takes_the_best_of_three_for_a_single_click(sam: HFSam) -> None:
    # SAM's reference path with its three masks per click; the adapter must return the one of highest predicted IoU.
    image = draw_shapes((90, 140), seed=4)
    points, labels = POINTS[:, :1], np.ones((3, 1), dtype=np.int64)
    sam.embed([image], ["img"])
    masks, scores = sam.predict("img", points=points, labels=labels, multimask=True)
    inputs = sam.processor(
        images=image, input_points=[points.tolist()], input_labels=[labels.tolist()], return_tensors="pt"
    )
    with torch.no_grad():
        out = sam.model(**inputs, multimask_output=True)
    assert out.pred_masks.shape[2] == 3
    reference = sam.processor.post_process_masks(
        out.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"]
    )
    best = out.iou_scores[0].argmax(-1).numpy()
    np.testing.assert_array_equal(masks, reference[0].numpy()[np.arange(3), best])
    np.testing.assert_allclose(scores, out.iou_scores[0].max(-1).values.numpy(), rtol=1e-5, atol=1e-6)
    single, _ = sam.predict("img", points=points, labels=labels)
    np.testing.assert_array_equal(single, reference_single(sam, image, points, labels))


def reference_single(sam: HFSam, image: Any, points: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """SAM's single-mask output through the full reference path."""
    inputs = sam.processor(
        images=image, input_points=[points.tolist()], input_labels=[labels.tolist()], return_tensors="pt"
    )
    with torch.no_grad():
        out = sam.model(**inputs, multimask_output=False)
    masks = sam.processor.post_process_masks(out.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"])
    return masks[0][:, 0].numpy()


@pytest.mark.parametrize(
    "prompts",
    [
        pytest.param({"boxes": [BOXES, BOXES[1:2]]}, id="boxes"),
        pytest.param(
            {"points": [POINTS[:, :1], POINTS[2:, :1]], "labels": [LABELS[:, :1], LABELS[2:, :1]]}, id="clicks"
        ),
        pytest.param(
            {"boxes": [BOXES[:2], BOXES], "points": [POINTS[:2], POINTS], "labels": [LABELS[:2], LABELS]},
            id="boxes-and-points",
        ),
    ],
)
@pytest.mark.parametrize("multimask", [False, True], ids=["single-mask", "multimask"])
def test_predict_batch_decodes_all_images_at_once_and_equals_predict(
    sam: HFSam, prompts: dict[str, list], multimask: bool
) -> None:
    # two images of different sizes with different numbers of prompts
    sam.embed([draw_shapes((128, 96), seed=5), draw_shapes((90, 140), seed=6)], ["a", "b"])
    decoder = Calls(sam.model.mask_decoder)
    batch = sam.predict_batch(["a", "b"], **prompts, multimask=multimask)
    counts = [len(next(iter(prompts.values()))[i]) for i in range(2)]
    assert decoder.batches == [sum(counts)]  # one decoder call, one row per prompt
    for i, (key, (masks, scores)) in enumerate(zip(["a", "b"], batch, strict=True)):
        alone, alone_scores = sam.predict(
            key, **{name: value[i] for name, value in prompts.items()}, multimask=multimask
        )
        assert masks.shape == alone.shape == (counts[i], *((96, 128) if key == "a" else (140, 90)))
        np.testing.assert_array_equal(masks, alone)
        # the batch's matrix products may round the scores' last bits differently (other matrix sizes)
        np.testing.assert_allclose(scores, alone_scores, rtol=1e-5, atol=1e-8)
    on_device = sam.predict_batch(["a", "b"], **prompts, multimask=multimask, host=False)
    assert all(torch.equal(m, torch.as_tensor(n)) for (m, _), (n, _) in zip(on_device, batch, strict=True))


@pytest.mark.parametrize(
    "prompts",
    [
        pytest.param({"boxes": [BOXES]}, id="fewer-prompt-sets-than-keys"),
        pytest.param(
            {"points": [POINTS, POINTS[:, :1]], "labels": [LABELS, LABELS[:, :1]]}, id="points-per-prompt-differ"
        ),
        pytest.param({"points": [POINTS, POINTS]}, id="points-without-labels"),
    ],
)
def test_predict_batch_rejects_bad_prompts(sam: HFSam, prompts: dict[str, list]) -> None:
    sam.embed([draw_shapes(seed=0), draw_shapes(seed=1)], ["a", "b"])
    with pytest.raises(ValueError):
        sam.predict_batch(["a", "b"], **prompts)
    with pytest.raises(KeyError, match="'never'"):
        sam.predict_batch(["a", "never"], boxes=[BOXES, BOXES])


@pytest.mark.parametrize("boxes_per_image", [1, 16], ids=["1-box", "16-boxes"])
def test_image_encoder_runs_once_per_image(sam: HFSam, boxes_per_image: int) -> None:
    encoder = Calls(sam.model.vision_encoder)
    images = [draw_shapes((128, 96), seed=i) for i in range(3)]
    sam.embed(images, ["a", "b", "c"])
    assert encoder.batches == [3]  # one batched call for the three images
    rng = np.random.default_rng(0)
    for key in ("a", "b", "c"):
        corners = rng.uniform(0, 90, size=(boxes_per_image, 2))
        masks, _ = sam.predict(key, boxes=np.concatenate([corners, corners + 30], axis=1))
        assert len(masks) == boxes_per_image
    sam.embed(images, ["a", "b", "c"])  # cached: no second pass
    assert encoder.batches == [3] and sam.encoder_calls == 3


def test_embed_batches_only_uncached_images(sam: HFSam) -> None:
    encoder = Calls(sam.model.vision_encoder)
    sam.embed([draw_shapes(seed=0)], ["a"])
    sam.embed([draw_shapes(seed=0), draw_shapes(seed=1), draw_shapes(seed=1)], ["a", "b", "b"])
    assert encoder.batches == [1, 1] and sam.encoder_calls == 2


def test_cache_evicts_least_recently_used(sam: HFSam) -> None:
    sam.cache_limit = 2
    for key in ("a", "b"):
        sam.embed([draw_shapes()], [key])
    sam.embed([draw_shapes()], ["a"])  # touch a: b is now the oldest
    sam.embed([draw_shapes()], ["c"])
    sam.predict("a", boxes=BOXES)
    sam.predict("c", boxes=BOXES)
    with pytest.raises(KeyError, match="'b'"):
        sam.predict("b", boxes=BOXES)
    # A call with more images than the limit keeps all of them for the predictions that follow.
    sam.embed([draw_shapes()] * 3, ["x", "y", "z"])
    for key in ("x", "y", "z"):
        sam.predict(key, boxes=BOXES)


def test_predict_needs_an_embedding(sam: HFSam) -> None:
    with pytest.raises(KeyError, match="embed"):
        sam.predict("never", boxes=BOXES)


@pytest.mark.parametrize(
    "prompts",
    [{}, {"points": POINTS}, {"boxes": BOXES[:2], "points": POINTS, "labels": LABELS}],
    ids=["nothing", "points-without-labels", "count-mismatch"],
)
def test_predict_rejects_bad_prompts(sam: HFSam, prompts: dict) -> None:
    sam.embed([draw_shapes()], ["img"])
    with pytest.raises(ValueError):
        sam.predict("img", **prompts)


def test_tiny_twin_is_deterministic(tmp_path: Path) -> None:
    for name in ("a", "b"):
        build_sam(tmp_path / name)
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


@pytest.mark.parametrize(
    ("pad", "low", "input_size", "original_size"),
    [
        (1024, 256, (768, 1024), (240, 320)),
        (1024, 256, (1024, 683), (1500, 1000)),
        (1024, 256, (1024, 1024), (37, 37)),
        (1024, 256, (1021, 1024), (2000, 2005)),
        (1024, 256, (3, 1024), (2, 700)),
        (1024, 256, (1024, 5), (900, 4)),
        (256, 64, (192, 256), (96, 128)),
        (1000, 256, (750, 1000), (300, 400)),
    ],
    ids=[
        "sam-4:3",
        "sam-portrait",
        "sam-square-upscaled",
        "sam-odd-rows",
        "sam-3-rows",
        "sam-5-cols",
        "twin",
        "pad-not-a-multiple",
    ],
)
def test_upscale_equals_the_processors_post_processing(
    pad: int, low: int, input_size: tuple[int, int], original_size: tuple[int, int]
) -> None:
    # only the logits the cut keeps are resized: every value must still be the processor's, bit for bit
    logits = torch.randn(5, 1, low, low, generator=torch.Generator().manual_seed(pad + low))
    processor = SamImageProcessorPil(pad_size={"height": pad, "width": pad})
    [expected] = processor.post_process_masks([logits.clone()], [original_size], [input_size])
    assert torch.equal(upscale(logits, (pad, pad), input_size, original_size), expected)
