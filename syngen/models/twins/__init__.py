"""Tiny twins: deterministic, randomly initialised models of the same classes as the real checkpoints.

One file per twin family in this folder, one registry line per twin below: its name (as in ``tiny:<name>``),
the pipeline backend that loads it (None for a twin only the trainer loads) and the function that saves it to a
folder. Twins are built once and cached under ``$SYNGEN_CACHE`` (see :func:`syngen.models.loading.build_tiny`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from syngen.registry import load_target

TINY_VERSION = "3"  # bump when a twin's architecture, initialisation or tokenizer changes, so caches rebuild


class Twin(NamedTuple):
    """A tiny twin: the backend that loads it (None: trainer only) and its builder as ``"module:function"``."""

    backend: str | None
    builder: str


TINY: dict[str, Twin] = {
    "captioner-blip": Twin("blip", "syngen.models.twins.blip:build_blip"),
    "captioner-llava": Twin("llava", "syngen.models.twins.llava:build_llava"),
    "captioner-qwen2.5-vl": Twin("qwen2.5-vl", "syngen.models.twins.qwen_vl:build_qwen_vl"),
    "sd": Twin("diffusers", "syngen.models.twins.diffusers:build_sd"),
    "sdxl": Twin("diffusers", "syngen.models.twins.diffusers:build_sdxl"),
    "llm": Twin("causal-lm", "syngen.models.twins.causal_lm:build_qwen2"),
    "grounder": Twin("grounding-dino", "syngen.models.twins.grounding_dino:build_grounding_dino"),
    "grounder-mm-grounding-dino": Twin(
        "mm-grounding-dino", "syngen.models.twins.grounding_dino:build_mm_grounding_dino"
    ),
    "segmenter": Twin("sam", "syngen.models.twins.sam:build_sam"),
    "sam3": Twin("sam3", "syngen.models.twins.sam3:build_sam3"),
    "segmenter-sam2": Twin("sam2", "syngen.models.twins.sam2:build_sam2"),
    "text-encoder": Twin(None, "syngen.models.twins.clip:build_clip_text"),
    "itm-blip": Twin(None, "syngen.models.twins.blip:build_blip_itm"),
}


def builder(name: str) -> Callable[[Path], None]:
    """The function that saves twin ``name`` to a folder (imported lazily: heavy libraries load only when used)."""
    built: Callable[[Path], None] = load_target(TINY[name].builder)
    return built
