"""The SAM 2 adapter on its tiny twin: the real checkpoint's classes, agreement with Sam2Model's own forward pass
from pixels, and the embedding cache and batching every SAM backend shares (the SAM 1 tests, run on SAM 2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers.utils.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from syngen.models.loading import build_tiny
from syngen.models.sam2 import PREPROCESSOR_FILE, HFSam2
from syngen.models.twins.sam2 import SIDE, build_sam2
from tests.helpers import draw_shapes
from tests.models.test_sam_hf import (  # noqa: F401  (collected here, on the SAM 2 fixture below)
    BOXES,
    LABELS,
    POINTS,
    test_cache_evicts_least_recently_used,
    test_embed_batches_only_uncached_images,
    test_image_encoder_runs_once_per_image,
    test_predict_batch_decodes_all_images_at_once_and_equals_predict,
    test_predict_batch_rejects_bad_prompts,
    test_predict_needs_an_embedding,
    test_predict_rejects_bad_prompts,
    test_predict_shapes_types_and_size,
)


@pytest.fixture(scope="module")
def twin() -> Path:
    return build_tiny("segmenter-sam2")


@pytest.fixture
def sam(twin: Path) -> HFSam2:
    return HFSam2(twin)


def test_twin_uses_the_real_checkpoint_classes(sam: HFSam2) -> None:
    # facebook/sam2.1-hiera-*: a Hiera backbone with an FPN neck, ImageNet normalisation, a square input
    assert type(sam.model).__name__ == "Sam2Model"
    assert type(sam.model.vision_encoder.backbone).__name__ == "Sam2HieraDetModel"
    assert sam.side == (SIDE, SIDE)
    np.testing.assert_allclose(sam.mean.flatten().cpu(), IMAGENET_DEFAULT_MEAN)
    np.testing.assert_allclose(sam.std.flatten().cpu(), IMAGENET_DEFAULT_STD)


def reference(sam: HFSam2, image: object, boxes: np.ndarray, points: np.ndarray, labels: np.ndarray) -> tuple:
    """Sam2Model's full forward pass from pixels (resized to the square input by PIL, normalised), prompts
    scaled to the square input as Sam2Processor scales them, masks bilinear to the image size, logits above 0."""
    w, h = image.size  # type: ignore[attr-defined]
    pixels = np.asarray(image.resize((SIDE, SIDE), 2), dtype=np.float32) / 255  # type: ignore[attr-defined]
    pixels = (pixels - IMAGENET_DEFAULT_MEAN) / IMAGENET_DEFAULT_STD
    scale = np.array([SIDE / w, SIDE / h], dtype=np.float32)
    with torch.no_grad():
        out = sam.model(
            pixel_values=torch.tensor(pixels, dtype=torch.float32).permute(2, 0, 1)[None],
            input_boxes=torch.tensor((boxes.reshape(-1, 2, 2) * scale).reshape(1, -1, 4)),
            input_points=torch.tensor(points * scale)[None],
            input_labels=torch.tensor(labels)[None],
            multimask_output=False,
        )
    masks = F.interpolate(out.pred_masks[0], (h, w), mode="bilinear", align_corners=False)[:, 0] > 0
    return masks.numpy(), out.iou_scores[0, :, 0].numpy()


def test_predict_matches_sam2_forward_from_pixels(sam: HFSam2) -> None:
    image = draw_shapes((90, 140), seed=3)
    sam.embed([image], ["img"])
    masks, scores = sam.predict("img", boxes=BOXES[:2], points=POINTS[:2], labels=LABELS[:2])
    expected_masks, expected_scores = reference(sam, image, BOXES[:2], POINTS[:2], LABELS[:2])
    assert expected_masks.any() and not expected_masks.all()
    np.testing.assert_array_equal(masks, expected_masks)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-4, atol=1e-5)


def test_twin_sees_the_image(sam: HFSam2) -> None:
    # the same box on two pictures gives two masks: the twin's image embedding is not ~0 (SAM 1's config default)
    sam.embed([draw_shapes(seed=0), draw_shapes(seed=1)], ["a", "b"])
    (first, _), (second, _) = sam.predict_batch(["a", "b"], boxes=[BOXES, BOXES])
    assert (first != second).mean() > 0.01


def test_tiny_twin_is_deterministic(tmp_path: Path) -> None:
    for name in ("a", "b"):
        build_sam2(tmp_path / name)
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


@pytest.mark.parametrize("layout", ["preprocessor-config", "processor-config"])
def test_loads_either_processor_layout(twin: Path, tmp_path: Path, layout: str) -> None:
    # the facebook/sam2.1 checkpoints' preprocessor_config.json, or a transformers 5 processor_config.json
    folder = tmp_path / "sam2"
    shutil.copytree(twin, folder)
    if layout == "processor-config":
        settings = json.loads((folder / PREPROCESSOR_FILE).read_text()) | {"size": {"height": 64, "width": 64}}
        (folder / "processor_config.json").write_text(json.dumps({"image_processor": settings}))
        (folder / PREPROCESSOR_FILE).unlink()
    assert HFSam2(folder).side == ((SIDE, SIDE) if layout == "preprocessor-config" else (64, 64))
    (folder / PREPROCESSOR_FILE).unlink(missing_ok=True)
    (folder / "processor_config.json").unlink(missing_ok=True)
    with pytest.raises(FileNotFoundError, match=PREPROCESSOR_FILE):
        HFSam2(folder)
