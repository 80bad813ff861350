"""Tiny twins of the diffusers text-to-image pipelines: Stable Diffusion ("sd") and SDXL ("sdxl")."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    DiffusionPipeline,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from syngen.models.twins.vocab import clip_bpe

# the noise schedules of stable-diffusion-v1-5 and stable-diffusion-xl-base-1.0
_SCHEDULE = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)


def build_sd(path: Path) -> None:
    """A tiny ``StableDiffusionPipeline`` making 64x64 images."""
    _build("sd", path)


def build_sdxl(path: Path) -> None:
    """A tiny ``StableDiffusionXLPipeline`` making 64x64 images."""
    _build("sdxl", path)


def _build(variant: str, path: Path) -> None:
    """A tiny "sd" (StableDiffusionPipeline) or "sdxl" (StableDiffusionXLPipeline) making 64x64 images.

    Same component classes as the real checkpoints; the VAE downsamples by 8 as theirs do, and the twins have
    no safety checker.
    """
    vocab, merges = clip_bpe()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
    text = dict(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        projection_dim=32,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(8, 16, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        norm_num_groups=8,
        layers_per_block=1,
        sample_size=64,
    )
    unet_size = dict(
        sample_size=8,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    )
    pipe: DiffusionPipeline
    if variant == "sd":
        pipe = StableDiffusionPipeline(
            vae=vae,
            text_encoder=CLIPTextModel(CLIPTextConfig(**text)),
            tokenizer=tokenizer,
            unet=UNet2DConditionModel(**unet_size, cross_attention_dim=32, attention_head_dim=8),
            scheduler=PNDMScheduler(**_SCHEDULE, skip_prk_steps=True, set_alpha_to_one=False),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    else:
        pipe = StableDiffusionXLPipeline(
            vae=vae,
            text_encoder=CLIPTextModel(CLIPTextConfig(**text)),
            text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**text)),
            tokenizer=tokenizer,
            tokenizer_2=tokenizer,
            unet=UNet2DConditionModel(
                **unet_size,
                cross_attention_dim=64,  # both text encoders' hidden states, concatenated
                attention_head_dim=(2, 4),
                use_linear_projection=True,
                addition_embed_type="text_time",
                addition_time_embed_dim=8,
                projection_class_embeddings_input_dim=32 + 6 * 8,  # pooled text + 6 size/crop ids
            ),
            scheduler=EulerDiscreteScheduler(**_SCHEDULE, timestep_spacing="leading"),
        )
    pipe.save_pretrained(path)
