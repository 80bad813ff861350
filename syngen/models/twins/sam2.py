"""Tiny twin of the SAM 2 segmenter: transformers' ``Sam2Model`` (Hiera backbone) with its preprocessor config."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import (
    Sam2Config,
    Sam2HieraDetConfig,
    Sam2MaskDecoderConfig,
    Sam2Model,
    Sam2PromptEncoderConfig,
    Sam2VisionConfig,
)

from syngen.models.sam2 import PREPROCESSOR_FILE, preprocessor_config

SIDE = 128  # input pixels (square, as SAM 2 resizes every image to its square input)


def build_sam2(path: Path) -> None:
    """A 4-stage, 5-block, 16-to-64-wide Hiera with a 32-wide neck and decoder on 128-pixel inputs, with its
    preprocessor config.

    Every initializer_range is 0.02 (Sam2's defaults), so the twin's masks depend on the image (a SAM 1 vision
    config defaults to 1e-10, which does not).
    """
    hidden = 32
    dims = [16, 32, 48, 64]
    sizes = [[SIDE // 4 >> level] * 2 for level in range(3)]  # patch stride 4, then halved per stage
    backbone = Sam2HieraDetConfig(
        hidden_size=dims[0],
        image_size=[SIDE, SIDE],
        blocks_per_stage=[1, 1, 2, 1],
        embed_dim_per_stage=dims,
        num_attention_heads_per_stage=[1, 1, 2, 2],
        window_size_per_stage=[4, 4, 4, 2],
        global_attention_blocks=[3],  # not a stage's first block (query pooling needs a window)
        window_positional_embedding_background_size=[2, 2],
    )
    config = Sam2Config(
        vision_config=Sam2VisionConfig(
            backbone_config=backbone,
            backbone_channel_list=dims[::-1],
            backbone_feature_sizes=sizes,
            fpn_hidden_size=hidden,
        ),
        prompt_encoder_config=Sam2PromptEncoderConfig(hidden_size=hidden, image_size=SIDE, patch_size=16),
        mask_decoder_config=Sam2MaskDecoderConfig(
            hidden_size=hidden, mlp_dim=2 * hidden, num_attention_heads=2, iou_head_hidden_dim=hidden
        ),
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = Sam2Model(config).eval()
    model.save_pretrained(path)
    (path / PREPROCESSOR_FILE).write_text(json.dumps(preprocessor_config(SIDE), indent=2))
