"""Stage registry, in pipeline order: one file per stage, one line each here."""

from __future__ import annotations

from typing import Any

from syngen.registry import load_target

STAGES: dict[str, str] = {
    "source": "syngen.stages.source:Source",
    "caption": "syngen.stages.caption:Caption",
    "synthesize": "syngen.stages.synthesize:Synthesize",
    "phrases": "syngen.stages.phrases:Phrases",
    "ground": "syngen.stages.ground:Ground",
    "segment": "syngen.stages.segment:Segment",
    "negatives": "syngen.stages.negatives:Negatives",
    "views": "syngen.stages.views:Views",
}


def stage_class(name: str) -> Any:
    """The Stage subclass registered under ``name``."""
    return load_target(STAGES[name])
