"""Model backends and tiny twins: one adapter file per backend, one registry line each.

Roles and their batch calls (inputs and outputs are plain Python / numpy / PIL):

- captioner: ``caption(images: list[PIL.Image], prompt: str, max_new_tokens: int) -> list[str]``
- text-to-image: ``generate(prompts: list[str], seeds: list[int], *, negative_prompt: str | None, steps: int,
  guidance_scale: float, height: int, width: int) -> list[PIL.Image]`` (one image per prompt, seeded)
- llm: ``chat(prompts: list[str], max_new_tokens: int) -> list[str]`` (chat template, left padding, greedy)
- grounder: ``detect(images, prompts: list[str], box_threshold, text_threshold) -> list[list[dict]]`` with
  dicts ``{"label": str, "box": [x1, y1, x2, y2] (pixels), "score": float}``; ``count_tokens(text) -> int``
- segmenter: ``embed(images, keys)`` caches image embeddings (encoder runs once per uncached key, batched);
  ``predict(key, boxes=None, points=None, labels=None) -> (masks (N, H, W) bool, scores (N,) float)``;
  ``encoder_calls`` counts images through the image encoder.
- image-text matching (the AMC policy): ``model`` and ``processor`` attributes, called by the trainer.
"""

from __future__ import annotations

import importlib
from typing import Any

# backend name -> "module:Class"
BACKENDS: dict[str, str] = {
    "blip": "syngen.models.blip:BlipCaptioner",
    "blip-itm": "syngen.models.blip_itm:BlipItm",
    "llava": "syngen.models.llava:LlavaCaptioner",
    "diffusers": "syngen.models.diffusers_t2i:DiffusersTextToImage",
    "causal-lm": "syngen.models.causal_lm:CausalLM",
    "grounding-dino": "syngen.models.grounding_dino:GroundingDino",
    "sam": "syngen.models.sam_hf:HFSam",
    "segment-anything": "syngen.models.sam_original:OriginalSam",
    "clip-text": "syngen.models.clip_text:ClipText",
}

# tiny twin name (as in `tiny:<name>`) -> (backend, variant passed to build_tiny)
TINY: dict[str, tuple[str, str]] = {
    "captioner-blip": ("blip", "blip"),
    "captioner-llava": ("llava", "llava"),
    "sd": ("diffusers", "sd"),
    "sdxl": ("diffusers", "sdxl"),
    "llm": ("causal-lm", "qwen2"),
    "grounder": ("grounding-dino", "grounding-dino"),
    "segmenter": ("sam", "sam"),
    "text-encoder": ("clip-text", "clip"),
    "itm-blip": ("blip-itm", "blip-itm"),
}


def backend_class(name: str) -> Any:
    """The adapter class registered under ``name`` (imported lazily: heavy libraries load only when used)."""
    module, _, cls = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), cls)
