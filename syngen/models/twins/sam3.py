"""Tiny twin of SAM 3: transformers' ``Sam3Model`` (text phrase -> every instance's box, mask and score) with its
tokenizer and image-processor settings (real checkpoint facebook/sam3).

transformers' ``Sam3ImageProcessor`` needs torchvision (no PIL fallback), so the twin writes the processor's
``preprocessor_config.json`` itself, with facebook/sam3's settings at the twin's size; the backend reads it.

SAM 3's interactive head (``Sam3TrackerModel``: points and boxes -> masks, on the detector's own image backbone)
is in ``tracker/``: facebook/sam3 holds both in one checkpoint, which transformers splits by key when each class
loads it; the twin's tracker backbone is replaced by the detector's when the backend loads them.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import (
    CLIPTextConfig,
    CLIPTokenizer,
    Sam3Config,
    Sam3Model,
    Sam3TrackerConfig,
    Sam3TrackerModel,
    Sam3VisionConfig,
    Sam3ViTConfig,
)

from syngen.models.twins.vocab import clip_bpe

IMAGE_SIZE = 224
PATCH = 14


def build_sam3(path: Path) -> None:
    """A 32-wide SAM 3 (2-layer ViT on 224-pixel inputs, 2-layer CLIP text tower, 20 queries) with its processor
    settings, and its interactive head in ``tracker/``.

    Every part keeps ``initializer_range=0.02`` (SAM 3's default, unlike SAM 1's vision tower), so the twin's
    image features depend on the image.
    """
    hidden = 32
    grid = IMAGE_SIZE // PATCH  # 16 patches a side; the FPN levels are 4x, 2x, 1x and 0.5x that
    vit = Sam3ViTConfig(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH,
        window_size=grid // 2,
        global_attn_indexes=[1],
        pretrain_image_size=IMAGE_SIZE,
    )
    vocab, merges = clip_bpe()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=32)
    text = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=32,  # the processor pads every phrase to 32 tokens
        projection_dim=hidden,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    small = {"hidden_size": hidden, "num_attention_heads": 2}
    layers = {**small, "intermediate_size": 2 * hidden, "num_layers": 2}
    config = Sam3Config(
        vision_config=Sam3VisionConfig(
            backbone_config=vit,
            fpn_hidden_size=hidden,
            backbone_feature_sizes=[[4 * grid] * 2, [2 * grid] * 2, [grid] * 2],
        ),
        text_config=text,
        geometry_encoder_config=layers,
        detr_encoder_config=layers,
        detr_decoder_config={**layers, "num_queries": 20},
        mask_decoder_config=small,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = Sam3Model(config).eval()
    model.save_pretrained(path)
    tracker = Sam3TrackerConfig(
        vision_config=config.vision_config.to_dict(),
        prompt_encoder_config={"hidden_size": hidden, "image_size": IMAGE_SIZE, "patch_size": PATCH},
        mask_decoder_config={**small, "mlp_dim": 2 * hidden, "iou_head_hidden_dim": hidden},
    )
    with torch.random.fork_rng():
        torch.manual_seed(1)
        Sam3TrackerModel(tracker).eval().save_pretrained(path / "tracker")
    tokenizer.save_pretrained(path)
    preprocessor = {
        "image_processor_type": "Sam3ImageProcessor",
        "processor_class": "Sam3Processor",
        "size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        "do_resize": True,
        "resample": 2,  # bilinear
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "do_convert_rgb": True,
    }
    (path / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
