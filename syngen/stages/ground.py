"""ground: box each phrase in its image with GroundingDINO (METHODS.md §1)."""

from __future__ import annotations

import re
from typing import Literal

from datasets import List, Value
from pydantic import Field, model_validator

from syngen.export.schema import BOX, Column
from syngen.masks import box_area, box_iou, clip_box, is_valid_box
from syngen.models.roles import Grounder
from syngen.refs import ModelRef
from syngen.sample import Region, Sample, load_image
from syngen.stages.base import ADDED_LATER, ModelStageConfig, Result, Stage, model_field


class GroundConfig(ModelStageConfig):
    """Settings of the ground stage."""

    model: ModelRef = model_field("tiny:grounder", "GroundingDINO checkpoint, e.g. IDEA-Research/grounding-dino-tiny.")
    box_threshold: float = Field(0.35, ge=0, le=1, description="Keep a detection whose box score is above this.")
    text_threshold: float = Field(
        0.25, ge=0, le=1, description="A prompt token belongs to a detection's label when its score is above this."
    )
    keep: Literal["best", "all"] = Field(
        "best", description="Per phrase, keep the best-scoring box, or all boxes above box_threshold."
    )
    nms_iou: float | None = Field(
        None, ge=0, le=1, description="Class-agnostic NMS across phrases at this box IoU; null turns it off."
    )
    max_text_tokens: int = Field(
        256, ge=4, le=256, description="Tokens per prompt (GroundingDINO reads 256); longer phrase lists are split."
    )
    min_box_area: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Drop a detection whose box covers less than this share of the image (counted as "
        "filtered_small_box).",
        json_schema_extra=ADDED_LATER,
    )
    max_box_area: float = Field(
        1.0,
        ge=0,
        le=1,
        description="Drop a detection whose box covers more than this share of the image (counted as "
        "filtered_large_box).",
        json_schema_extra=ADDED_LATER,
    )

    @model_validator(mode="after")
    def _area_range(self) -> GroundConfig:
        if self.min_box_area >= self.max_box_area:
            raise ValueError(f"min_box_area ({self.min_box_area}) must be below max_box_area ({self.max_box_area})")
        return self


class Ground(Stage[GroundConfig, Grounder]):
    """Boxes for a sample's phrases.

    Needs ``image``, ``phrases``. Replaces ``regions`` with ``[{"phrase", "box" (xyxy pixels, clipped to the
    image), "box_score", "label"}]`` in phrase order, best score first; adds ``ground_stats``: ``detections``
    (regions kept), ``dropped_degenerate`` (NaN, zero-area or off-image boxes), ``filtered_small_box`` and
    ``filtered_large_box`` (outside [``min_box_area``, ``max_box_area``]), ``dropped_nms``, ``no_phrase``
    (detections whose above-``text_threshold`` token scores lie in no phrase), ``dropped_long_phrases`` (a phrase
    alone over ``max_text_tokens``) and ``prompts`` (model passes). An image with no detection gets
    ``regions = []``.

    A detection belongs to the phrase whose prompt tokens hold most of its token scores above ``text_threshold``
    (the grounder tells which); its ``label`` (the text of those tokens: often only the head noun, sometimes words
    of two phrases, or ``[UNK]``) is kept for information and never compared with the phrases.

    The prompt is the lower-cased phrases joined as ``"a. b. c."``; all images of a batch go through the model
    together, one pass per prompt when a phrase list needs several.

    Example::

        stage = Ground(GroundConfig(), ctx)
        stage.process([{"id": "x", "image": png, "phrases": ["red circle", "blue box"]}], grounder)
        # -> [{"regions": [{"phrase": "red circle", "box": [...], "box_score": 0.8}], "ground_stats": {...}}]
    """

    name = "ground"
    needs = ("image", "phrases")
    adds = ("regions", "ground_stats")
    publishes = {
        "regions": Column(
            List({"phrase": Value("string"), "box": BOX, "box_score": Value("float32"), "label": Value("string")}),
            "one per grounded phrase: `phrase`, `box` [x1, y1, x2, y2] in pixels, `box_score` (GroundingDINO), "
            "`label` (the prompt tokens GroundingDINO read, for information)",
        )
    }
    Config = GroundConfig
    role = "grounder"
    default_backend = "grounding-dino"

    def process(self, samples: list[Sample], model: Grounder) -> list[Result]:
        images = [load_image(sample) for sample in samples]
        stats = [dict.fromkeys(_STATS, 0) for _ in samples]
        plans = [
            self._passes(model, _unique(sample["phrases"]), stat) for sample, stat in zip(samples, stats, strict=True)
        ]
        found: list[list[Region]] = [[] for _ in samples]
        for k in range(max(map(len, plans), default=0)):
            todo = [i for i, plan in enumerate(plans) if k < len(plan)]
            detections = model.detect(
                [images[i] for i in todo],
                [_prompt(plans[i][k]) for i in todo],
                self.config.box_threshold,
                self.config.text_threshold,
            )
            for i, dets in zip(todo, detections, strict=True):
                stats[i]["prompts"] += 1
                for det in dets:
                    if det["phrase"] is None or det["phrase"] >= len(plans[i][k]):
                        stats[i]["no_phrase"] += 1
                    else:
                        phrase = plans[i][k][det["phrase"]]
                        found[i].append(
                            {"phrase": phrase, "box": det["box"], "box_score": det["score"], "label": det["label"]}
                        )
        return [
            {"regions": self._regions(dets, image.width, image.height, stat, sample["phrases"]), "ground_stats": stat}
            for dets, image, stat, sample in zip(found, images, stats, samples, strict=True)
        ]

    def _passes(self, model: Grounder, phrases: list[str], stats: dict[str, int]) -> list[list[str]]:
        """The phrases split greedily into prompts of at most ``max_text_tokens`` tokens."""
        limit = self.config.max_text_tokens
        passes: list[list[str]] = []
        current: list[str] = []
        for phrase in phrases:
            if model.count_tokens(_prompt([phrase])) > limit:
                stats["dropped_long_phrases"] += 1
                continue
            if current and model.count_tokens(_prompt(current + [phrase])) > limit:
                passes.append(current)
                current = []
            current.append(phrase)
        return passes + [current] if current else passes

    def _area_ok(self, box: list[float], image_area: int, stats: dict[str, int]) -> bool:
        """Whether a box's share of the image lies within [min_box_area, max_box_area]; counts a refusal."""
        share = box_area(box) / image_area
        if share < self.config.min_box_area:
            stats["filtered_small_box"] += 1
            return False
        if share > self.config.max_box_area:
            stats["filtered_large_box"] += 1
            return False
        return True

    def _regions(
        self, dets: list[Region], width: int, height: int, stats: dict[str, int], phrases: list[str]
    ) -> list[Region]:
        """Valid boxes clipped to the image, the best per phrase (or all), then NMS; in phrase order."""
        valid: list[Region] = [
            {**det, "box": clip_box(det["box"], width, height)}
            for det in dets
            if is_valid_box(det["box"], width, height)
        ]
        stats["dropped_degenerate"] += len(dets) - len(valid)
        valid = [det for det in valid if self._area_ok(det["box"], width * height, stats)]
        valid.sort(key=lambda det: -det["box_score"])
        if self.config.keep == "best":
            best: dict[str, Region] = {}
            for det in valid:
                best.setdefault(det["phrase"], det)
            valid = list(best.values())
        if self.config.nms_iou is not None:
            kept: list[Region] = []
            for det in valid:
                if all(box_iou(det["box"], other["box"]) <= self.config.nms_iou for other in kept):
                    kept.append(det)
            stats["dropped_nms"] += len(valid) - len(kept)
            valid = kept
        order = {phrase: n for n, phrase in enumerate(phrases)}
        valid.sort(key=lambda det: order[det["phrase"]])  # stable: best score first within a phrase
        stats["detections"] = len(valid)
        return valid


_STATS = (
    "detections",
    "dropped_degenerate",
    "filtered_small_box",
    "filtered_large_box",
    "dropped_nms",
    "no_phrase",
    "dropped_long_phrases",
    "prompts",
)


def _key(text: str) -> str:
    """What makes two phrases the same prompt phrase: lower-case letters and digits only."""
    return re.sub(r"[\W_]+", "", text.lower())


def _unique(phrases: list[str]) -> list[str]:
    """The phrases with those that match an earlier one (same key) removed."""
    seen: dict[str, str] = {}
    for phrase in phrases:
        seen.setdefault(_key(phrase), phrase)
    return [phrase for key, phrase in seen.items() if key]


def _prompt(phrases: list[str]) -> str:
    """GroundingDINO's prompt ``"a. b. c."``: lower case; "." and "?" inside a phrase (which would split it) become
    spaces."""
    return " ".join(" ".join(re.sub(r"[.?]", " ", phrase.lower()).split()) + "." for phrase in phrases)
