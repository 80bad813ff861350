"""Model backends: one adapter file per backend, one registry line each (its role and its class).

The roles and their batch calls are the Protocols of :mod:`syngen.models.roles`; tiny twins are registered in
:mod:`syngen.models.twins`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from syngen.models.roles import Role
from syngen.registry import load_target


class Backend(NamedTuple):
    """A backend's role and its adapter class as ``"module:Class"`` (imported only when loaded); ``also``: other
    roles the same loaded adapter serves (SAM 3 grounds phrases and, with its interactive head, segments prompts)."""

    role: Role
    target: str
    also: tuple[Role, ...] = ()

    def serves(self, role: Role | None) -> bool:
        return role == self.role or role in self.also


BACKENDS: dict[str, Backend] = {
    "blip": Backend("captioner", "syngen.models.blip:BlipCaptioner"),
    "llava": Backend("captioner", "syngen.models.llava:LlavaCaptioner"),
    "qwen2.5-vl": Backend("captioner", "syngen.models.qwen_vl:QwenVLCaptioner"),
    "diffusers": Backend("text-to-image", "syngen.models.diffusers_t2i:DiffusersTextToImage"),
    "causal-lm": Backend("llm", "syngen.models.causal_lm:CausalLM"),
    "grounding-dino": Backend("grounder", "syngen.models.grounding_dino:GroundingDino"),
    "mm-grounding-dino": Backend("grounder", "syngen.models.grounding_dino:MMGroundingDino"),
    "sam": Backend("segmenter", "syngen.models.sam_hf:HFSam"),
    "segment-anything": Backend("segmenter", "syngen.models.sam_original:OriginalSam"),
    "sam3": Backend("grounder", "syngen.models.sam3:Sam3", also=("segmenter",)),
    "sam2": Backend("segmenter", "syngen.models.sam2:HFSam2"),
}


def backend_class(name: str) -> Any:
    """The adapter class registered under ``name`` (imported lazily: heavy libraries load only when used)."""
    return load_target(BACKENDS[name].target)
