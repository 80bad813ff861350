"""Text-to-image with diffusers (Stable Diffusion 1.x/2.x and SDXL through ``AutoPipelineForText2Image``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import diffusers
import torch
from diffusers import AutoencoderKL, AutoPipelineForText2Image
from diffusers.utils import logging as diffusers_logging
from PIL import Image

from syngen.models.base import Adapter, timed
from syngen.threads import on_gpu


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
        vae: str | Path | None = None,
        **kwargs: Any,
    ):
        """Loads the pipeline; ``scheduler`` (a diffusers scheduler class name), ``variant`` (weights variant),
        ``vae_tiling``, ``cpu_offload`` (CUDA only), ``vae_slicing`` and ``vae`` (the folder of an AutoencoderKL
        that replaces the checkpoint's) are the synthesize stage's settings."""
        super().__init__(path, **kwargs)
        diffusers_logging.disable_progress_bar()  # syngen shows its own progress per stage
        # a component passed to from_pretrained is used as it is, not cast: load it in the pipeline's dtype
        components = {} if vae is None else {"vae": AutoencoderKL.from_pretrained(vae, dtype=self.dtype)}
        # A checkpoint's safety checker, if it has one, stays in place (and blacks out flagged images).
        self.pipe = AutoPipelineForText2Image.from_pretrained(
            self.path, dtype=self.dtype, variant=variant, trust_remote_code=self.trust_remote_code, **components
        )
        if scheduler is not None:
            self.pipe.scheduler = getattr(diffusers, scheduler).from_config(self.pipe.scheduler.config)
        if vae_tiling:
            self.pipe.vae.enable_tiling()
        if vae_slicing:
            self.pipe.vae.enable_slicing()
        if cpu_offload and on_gpu(self.device):
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
