"""The segment-anything adapter: model type from the file name, and (where segment-anything imports) agreement
with segment-anything's own SamPredictor on a tiny model."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from syngen.models.sam_original import OriginalSam, model_type
from tests.helpers import draw_shapes


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sam_vit_b_01ec64.pth", "vit_b"),
        ("sam_vit_l_0b3195.pth", "vit_l"),
        ("/ckpt/SAM_VIT_H_4b8939.pth", "vit_h"),
        ("my-finetuned-sam.pth", "vit_b"),
        ("/models/vit_h/sam.pth", "vit_b"),
    ],
    ids=["vit-b", "vit-l", "upper-case-vit-h", "unnamed-defaults-to-vit-b", "only-the-file-name-counts"],
)
def test_model_type(name: str, expected: str) -> None:
    assert model_type(name) == expected


@pytest.fixture
def tiny_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny segment-anything SAM registered as vit_l, saved as an original state-dict .pth."""
    sa = pytest.importorskip(
        "segment_anything", reason="segment-anything needs torchvision, which has no CPU build here"
    )
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    def build(checkpoint: Any = None) -> Sam:
        torch.manual_seed(0)
        return Sam(
            image_encoder=ImageEncoderViT(
                depth=2,
                embed_dim=32,
                img_size=256,
                mlp_ratio=2,
                norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                num_heads=2,
                patch_size=16,
                qkv_bias=True,
                use_rel_pos=True,
                global_attn_indexes=[1],
                window_size=4,
                out_chans=32,
            ),
            prompt_encoder=PromptEncoder(
                embed_dim=32, image_embedding_size=(16, 16), input_image_size=(256, 256), mask_in_chans=4
            ),
            mask_decoder=MaskDecoder(
                num_multimask_outputs=3,
                transformer=TwoWayTransformer(depth=2, embedding_dim=32, mlp_dim=64, num_heads=2),
                transformer_dim=32,
                iou_head_depth=3,
                iou_head_hidden_dim=32,
            ),
            pixel_mean=[123.675, 116.28, 103.53],
            pixel_std=[58.395, 57.12, 57.375],
        ).eval()

    monkeypatch.setitem(sa.sam_model_registry, "vit_l", build)
    path = tmp_path / "sam_vit_l_tiny.pth"
    torch.save(build().state_dict(), path)
    return path


@pytest.mark.parametrize(
    "prompts",
    [
        {"boxes": [[10, 10, 60, 50], [70, 30, 120, 90]]},
        {"points": [[[30, 30]], [[90, 60]]], "labels": [[1], [0]]},
        {"boxes": [[10, 10, 60, 50], [70, 30, 120, 90]], "points": [[[30, 30], [50, 40]]] * 2, "labels": [[1, 0]] * 2},
    ],
    ids=["boxes", "one-point-each", "boxes-and-points"],
)
def test_matches_sam_predictor(tiny_checkpoint: Path, prompts: dict[str, list]) -> None:
    from segment_anything import SamPredictor

    sam = OriginalSam(tiny_checkpoint)
    images = [draw_shapes((128, 96), seed=0), draw_shapes((90, 140), seed=1)]
    sam.embed(images, ["a", "b"])
    assert sam.encoder_calls == 2
    arrays = {name: np.array(value) for name, value in prompts.items()}
    predictor = SamPredictor(sam.model)
    for key, image in zip(("a", "b"), images, strict=True):
        masks, scores = sam.predict(key, **arrays)
        predictor.set_image(np.asarray(image))
        transform, size = predictor.transform, predictor.original_size
        boxes = arrays.get("boxes")
        points = arrays.get("points")
        expected, expected_scores, _ = predictor.predict_torch(
            None if points is None else transform.apply_coords_torch(torch.tensor(points), size),
            None if points is None else torch.tensor(arrays["labels"]),
            None if boxes is None else transform.apply_boxes_torch(torch.tensor(boxes), size),
            multimask_output=False,
        )
        assert masks.shape == (2, image.height, image.width) and masks.dtype == bool
        np.testing.assert_array_equal(masks, expected[:, 0].numpy())
        np.testing.assert_allclose(scores, expected_scores[:, 0].numpy(), rtol=1e-5, atol=1e-6)
