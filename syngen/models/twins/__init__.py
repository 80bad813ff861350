"""Tiny twins: deterministic, randomly initialised models of the same classes as the real checkpoints."""

from __future__ import annotations

TINY_VERSION = "2"  # bump when a twin's architecture or tokenizer changes, so caches rebuild

# tiny twin name (as in `tiny:<name>`) -> (backend, variant passed to build_tiny)
TINY: dict[str, tuple[str, str]] = {
    "captioner-blip": ("blip", "blip"),
    "captioner-llava": ("llava", "llava"),
    "sd": ("diffusers", "sd"),
    "sdxl": ("diffusers", "sdxl"),
    "llm": ("causal-lm", "qwen2"),
    "grounder": ("grounding-dino", "grounding-dino"),
    "segmenter": ("sam", "sam"),
}
