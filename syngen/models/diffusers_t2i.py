"""Text-to-image with diffusers (Stable Diffusion 1.x/2.x and SDXL through ``AutoPipelineForText2Image``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import diffusers
import torch
from diffusers import (
    AutoencoderKL,
    AutoPipelineForText2Image,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from diffusers.utils import logging as diffusers_logging
from PIL import Image
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from syngen.models.base import Adapter, timed
from syngen.models.vocab import clip_bpe

# the noise schedules of stable-diffusion-v1-5 and stable-diffusion-xl-base-1.0
_SCHEDULE = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)


class DiffusersTextToImage(Adapter):
    """Generates one image per prompt, each from its own seeded generator (same seed, same image, any batch)."""

    def __init__(
        self,
        path: str | Path,
        *,
        scheduler: str | None = None,
        variant: str | None = None,
        vae_tiling: bool = False,
        cpu_offload: bool = False,
        vae_slicing: bool = False,
        **kwargs: Any,
    ):
        """Loads the pipeline; ``scheduler`` (a diffusers scheduler class name), ``variant`` (weights variant),
        ``vae_tiling``, ``cpu_offload`` (CUDA only) and ``vae_slicing`` are the synthesize stage's settings."""
        super().__init__(path, **kwargs)
        diffusers_logging.disable_progress_bar()  # syngen shows its own progress per stage
        # A checkpoint's safety checker, if it has one, stays in place (and blacks out flagged images).
        self.pipe = AutoPipelineForText2Image.from_pretrained(
            self.path, dtype=self.dtype, variant=variant, trust_remote_code=self.trust_remote_code
        )
        if scheduler is not None:
            self.pipe.scheduler = getattr(diffusers, scheduler).from_config(self.pipe.scheduler.config)
        if vae_tiling:
            self.pipe.vae.enable_tiling()
        if vae_slicing:
            self.pipe.vae.enable_slicing()
        if cpu_offload and self.device.type == "cuda":
            self.pipe.enable_model_cpu_offload(device=self.device)
        else:
            self.pipe.to(self.device)
        self.pipe.set_progress_bar_config(disable=True)

    @timed
    def generate(
        self,
        prompts: list[str],
        seeds: list[int],
        *,
        negative_prompt: str | None = None,
        steps: int,
        guidance_scale: float,
        height: int | None = None,
        width: int | None = None,
    ) -> list[Image.Image]:
        """One PIL image per prompt; ``height``/``width`` (multiples of 8) default to the checkpoint's size."""
        if len(prompts) != len(seeds):
            raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
        generators = [torch.Generator(self.device).manual_seed(seed) for seed in seeds]
        return self.pipe(
            prompt=prompts,
            negative_prompt=[negative_prompt] * len(prompts) if negative_prompt else None,
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            height=height,
            width=width,
            generator=generators,
            output_type="pil",
        ).images

    @classmethod
    def build_tiny(cls, variant: str, path: Path) -> None:
        """A tiny "sd" (StableDiffusionPipeline) or "sdxl" (StableDiffusionXLPipeline) making 64x64 images.

        Same component classes as the real checkpoints; the VAE downsamples by 8 as theirs do, and the twins have
        no safety checker.
        """
        if variant not in ("sd", "sdxl"):
            raise ValueError(f"unknown diffusers twin {variant!r}: sd or sdxl")
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
