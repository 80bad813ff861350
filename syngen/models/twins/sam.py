"""Tiny twin of the segmenter: transformers' SAM (``SamModel``) with its processor."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    SamConfig,
    SamMaskDecoderConfig,
    SamModel,
    SamProcessor,
    SamPromptEncoderConfig,
    SamVisionConfig,
)
from transformers.models.sam import SamImageProcessorPil

from syngen.models.sam_hf import seeing


def build_sam(path: Path) -> None:
    """A 32-wide, 2-layer SAM on 256-pixel inputs, with its processor (vision tower initialised to see)."""
    hidden = 32
    config = seeing(
        SamConfig(
            vision_config=SamVisionConfig(
                hidden_size=hidden,
                output_channels=hidden,
                num_hidden_layers=2,
                num_attention_heads=2,
                image_size=256,
                window_size=4,
                global_attn_indexes=[1],
                num_pos_feats=hidden // 2,  # must equal the prompt encoder's hidden_size // 2
                mlp_dim=2 * hidden,
            ),
            prompt_encoder_config=SamPromptEncoderConfig(hidden_size=hidden, image_size=256),
            mask_decoder_config=SamMaskDecoderConfig(
                hidden_size=hidden, mlp_dim=2 * hidden, num_attention_heads=2, iou_head_hidden_dim=hidden
            ),
        )
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = SamModel(config).eval()
    model.save_pretrained(path)
    image_processor = SamImageProcessorPil(size={"longest_edge": 256}, pad_size={"height": 256, "width": 256})
    SamProcessor(image_processor=image_processor).save_pretrained(path)
