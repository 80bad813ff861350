"""The published schema: each config's ``datasets.Features`` and the card's lines about its columns.

A stage declares the columns it publishes in the ``grounding`` config (``Stage.publishes``: name ->
:class:`~syngen.columns.Column`); :func:`build` merges the declarations of the stages that ran, in pipeline order,
and adds the columns the export makes itself (``id``, ``overlay``, ``provenance``). Two stages may declare the same
column: equal types are one column, lists of structs merge their fields (ground, segment and views each add fields to
``regions``). The ``preference`` config is derived from several stages, so the export declares it here; it holds
each pair's image only with ``output.embed_images`` (:func:`preference_columns`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from datasets import Features, List, Value
from datasets import Image as ImageFeature

from syngen.columns import BOX, RLE, Column


@dataclass
class ConfigSchema:
    """One published config: what a row is, its features, and the card's fields table rows
    ``(column, type, declared by, meaning)``."""

    name: str
    row: str
    features: Features
    fields: list[tuple[str, str, str, str]]


ID = Column(Value("string"), "stable sample id (from the source item and the settings that made the image)")
OVERLAY = Column(ImageFeature(), "the image with every region's mask tinted, its box outlined and its phrase written")
PROVENANCE = Column(
    {
        "source_kind": Value("string"),
        "source_item": Value("string"),
        "synth_seed": Value("int64"),
        "synth_index": Value("int32"),
        "synth_parent": Value("string"),
        "synth_prompt": Value("string"),
        "models": List({"stage": Value("string"), "id": Value("string"), "revision": Value("string")}),
    },
    "source kind and item (file name or dataset index), synthesis seed, index, parent id and prompt, and the model "
    "ids and revisions of every stage",
)
PREFERENCE: dict[str, Column] = {
    "id": Column(Value("string"), "the pair: `<image_id>-<region index>-<negative index>`"),
    "image_id": Column(
        Value("string"),
        "the `grounding` row the pair comes from, which holds its image (`syngen.data.load_preference` joins them)",
    ),
    "region_index": Column(Value("int32"), "the region of that row"),
    "prompt": Column(Value("string"), "the region's phrase"),
    "box": Column(BOX, "the region's box, xyxy pixels"),
    "chosen": Column(RLE, "SAM's mask, COCO RLE"),
    "rejected": Column(RLE, "the hard negative mask, COCO RLE"),
    "chosen_mask": Column(ImageFeature(), "the chosen mask as a 1-bit PNG, for the viewer"),
    "rejected_mask": Column(ImageFeature(), "the rejected mask as a 1-bit PNG"),
    "kind": Column(
        Value("string"),
        "`boundary` or `semantic` (SAM prompted near or away from the region), or `instance` (another instance of "
        "the phrase)",
    ),
    "iou": Column(Value("float32"), "IoU of rejected with chosen"),
    "chosen_score": Column(Value("float32"), "SAM's predicted IoU of the chosen mask"),
    "rejected_score": Column(Value("float32"), "SAM's predicted IoU of the rejected mask"),
    "points": Column(List(List(Value("float32"), length=2)), "the prompt points (xy pixels) that made the negative"),
    "labels": Column(List(Value("int8")), "their labels (1 foreground, 0 background)"),
    "seed": Column(Value("int64"), "the seed that drew the points (null for `instance`)"),
    "multimask": Column(Value("bool"), "SAM's best of three masks was taken (single clicks), else its single mask"),
}
# with ``output.embed_images`` each pair carries its image too (self-contained rows), after ``region_index``
EMBEDDED_IMAGE = Column(ImageFeature(), "the image (only with `output.embed_images`; else it is in `grounding`)")
ROWS = {
    "grounding": "one image: caption, phrases, regions (box, SAM mask as COCO RLE, DynRefer views), overlay",
    "preference": "one (region, negative) pair: phrase as prompt, chosen and rejected masks, kind, IoU",
}


def published(stages: Mapping[str, Any] | None = None) -> list[tuple[str, dict[str, Column]]]:
    """(stage, the columns it publishes) for the given stages (name -> config, in pipeline order), or for every
    registered stage with all the columns it may publish."""
    from syngen.stages import STAGES, stage_class

    if stages is None:
        return [(name, stage_class(name).publishes) for name in STAGES]
    return [(name, stage_class(name).published(config)) for name, config in stages.items()]


def build(declared: Iterable[tuple[str, Mapping[str, Column]]], embed_images: bool = False) -> dict[str, ConfigSchema]:
    """The configs' schemas from each stage's published columns (see :func:`published`); with ``embed_images``
    the ``preference`` config has an ``image`` column."""
    features: dict[str, Any] = {"id": ID.feature}
    fields = [_field("id", "export", ID)]
    for stage, columns in declared:
        for name, column in columns.items():
            features[name] = merge(features[name], column.feature, name) if name in features else column.feature
            fields.append(_field(name, stage, column))
    export_made = {"overlay": OVERLAY} if "image" in features else {}
    for name, column in (export_made | {"provenance": PROVENANCE}).items():
        features[name] = column.feature
        fields.append(_field(name, "export", column))
    pairs = preference_columns(embed_images)
    preference = [_field(name, "export", column) for name, column in pairs.items()]
    return {
        "grounding": ConfigSchema("grounding", ROWS["grounding"], Features(features), fields),
        "preference": ConfigSchema(
            "preference", ROWS["preference"], Features({k: c.feature for k, c in pairs.items()}), preference
        ),
    }


def preference_columns(embed_images: bool = False) -> dict[str, Column]:
    """The ``preference`` config's columns: the image only with ``embed_images`` (by default it is stored once, in
    ``grounding``, and a pair refers to it by ``image_id``)."""
    if not embed_images:
        return PREFERENCE
    names = list(PREFERENCE)
    at = names.index("region_index") + 1
    return (
        {name: PREFERENCE[name] for name in names[:at]}
        | {"image": EMBEDDED_IMAGE}
        | {name: PREFERENCE[name] for name in names[at:]}
    )


def merge(first: Any, second: Any, where: str) -> Any:
    """One feature from two declarations of the same column: equal types, or structs (and lists of structs) whose
    fields are merged. Anything else is a conflict between stages (ValueError)."""
    if first == second:
        return first
    if isinstance(first, dict) and isinstance(second, dict):
        both = first.keys() & second.keys()
        return {
            k: merge(first[k], second[k], f"{where}.{k}") if k in both else (first | second)[k] for k in first | second
        }
    if isinstance(first, List) and isinstance(second, List) and first.length == second.length:
        return List(merge(first.feature, second.feature, where), length=first.length)
    raise ValueError(f"column {where!r} is declared as {first} by one stage and as {second} by another")


def type_name(feature: Any) -> str:
    """A short name of a feature type for the card: ``string``, ``Image``, ``4 × float32``, ``list of struct``."""
    if isinstance(feature, dict):
        return "struct"
    if isinstance(feature, List):
        inner = type_name(feature.feature)
        return f"{feature.length} × {inner}" if feature.length > 0 else f"list of {inner}"
    if isinstance(feature, Value):
        return feature.dtype
    return type(feature).__name__


def _field(name: str, by: str, column: Column) -> tuple[str, str, str, str]:
    return name, type_name(column.feature), by, column.doc
