"""ground: box each phrase in its image with GroundingDINO (docs/methods.md#phrases-and-grounding), or box
and mask every instance of it with SAM 3 (docs/sam3.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, cast

from datasets import List, Value
from pydantic import Field, model_validator

from syngen.columns import BOX, RLE, Column
from syngen.masks import box_area, box_iou, clip_box, encode_rle, is_valid_box
from syngen.models.roles import Grounder, InstanceGrounder
from syngen.refs import ModelRef
from syngen.sample import Region, Sample, load_image
from syngen.stages.base import ADDED_LATER, ModelStageConfig, Outcome, Stage, StageConfig, Update, model_field

_REGION = {"phrase": Value("string"), "box": BOX, "box_score": Value("float32"), "label": Value("string")}


def makes_masks(config: GroundConfig) -> bool:
    """Whether the ground stage's model also segments (SAM 3): its regions then carry their masks."""
    from syngen.models import BACKENDS
    from syngen.models.loading import backend_for

    backend = BACKENDS.get(backend_for(config.model, Ground.default_backend))
    return backend is not None and backend.serves("segmenter")


class GroundConfig(ModelStageConfig):
    """Settings of the ground stage."""

    model: ModelRef = model_field(
        "tiny:grounder",
        "GroundingDINO checkpoint, e.g. IDEA-Research/grounding-dino-tiny (or facebook/sam3 with backend sam3: "
        "regions then carry their masks).",
    )
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


@dataclass
class _Instances:
    """A SAM 3 sample's instances as found (detections with their masks) and its image's size, for
    :meth:`Ground.finish`."""

    dets: list[dict[str, Any]]
    width: int
    height: int
    stats: dict[str, int]


class Ground(Stage[GroundConfig, Grounder | InstanceGrounder]):
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

    With a grounder that also segments (SAM 3, backend ``sam3``), each image is embedded once (under the sample's
    id, so the negatives stage reuses it) and every phrase runs against that embedding in one call; each instance
    scoring above ``box_threshold`` (SAM 3's score: query probability times presence probability) is a detection
    of its phrase, and the regions also carry ``mask`` (RLE) and ``mask_score`` (that score); ``label`` is the
    phrase, ``text_threshold`` is unused, phrases over SAM 3's 32 text tokens count as ``dropped_long_phrases``,
    and ``dropped_empty_mask`` counts instances whose mask is empty. ``keep``, the area filters and NMS apply as
    for boxes. A recipe with such a grounder has no ``segment`` stage (docs/sam3.md).

    The prompt is the lower-cased phrases joined as ``"a. b. c."``; all images of a batch go through the model
    together, one pass per prompt when a phrase list needs several.

    Example::

        stage = Ground(GroundConfig(), ctx)
        stage.outcomes([{"id": "x", "image": png, "phrases": ["red circle", "blue box"]}], grounder)
        # -> [{"regions": [{"phrase": "red circle", "box": [...], "box_score": 0.8}], "ground_stats": {...}}]
    """

    name = "ground"
    needs = ("image", "phrases")
    adds = ("regions", "ground_stats")
    publishes = {
        "regions": Column(
            List(_REGION),
            "one per grounded phrase: `phrase`, `box` [x1, y1, x2, y2] in pixels, `box_score` (GroundingDINO), "
            "`label` (the prompt tokens GroundingDINO read, for information)",
        )
    }
    Config = GroundConfig
    role = "grounder"
    default_backend = "grounding-dino"

    @classmethod
    def published(cls, config: StageConfig) -> dict[str, Column]:
        """The regions column, with each region's mask when the grounder makes them (SAM 3)."""
        if not isinstance(config, GroundConfig) or not makes_masks(config):
            return super().published(config)
        return {
            "regions": Column(
                List({**_REGION, "mask": RLE, "mask_score": Value("float32")}),
                "one per grounded instance: `phrase`, `box` [x1, y1, x2, y2] in pixels, `box_score` (SAM 3: query "
                "times presence probability), `label` (the phrase), `mask` (COCO RLE) and `mask_score` (= box_score)",
            )
        }

    def process(self, samples: list[Sample], model: Grounder | InstanceGrounder) -> list[Outcome | _Instances]:
        if isinstance(model, InstanceGrounder):
            return self._instances(samples, model)
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

    def _instances(self, samples: list[Sample], model: InstanceGrounder) -> list[Outcome | _Instances]:
        """The SAM 3 path (see the class docstring): one embedding per image, every phrase in one call."""
        stats = [dict.fromkeys((*_STATS, "dropped_empty_mask"), 0) for _ in samples]
        limit = min(self.config.max_text_tokens, model.max_text_tokens)
        phrases: list[list[str]] = []
        for sample, stat in zip(samples, stats, strict=True):
            fitting = [p for p in _unique(sample["phrases"]) if model.count_tokens(p) <= limit]
            stat["dropped_long_phrases"] = len(_unique(sample["phrases"])) - len(fitting)
            stat["prompts"] = int(bool(fitting))
            phrases.append(fitting)
        todo = [i for i, fitting in enumerate(phrases) if fitting]
        images = {i: load_image(samples[i]) for i in todo}
        keys = [samples[i]["id"] for i in todo]
        if keys:
            model.embed(list(images.values()), keys)
        found = model.ground(keys, [phrases[i] for i in todo], self.config.box_threshold) if keys else []
        results: list[Outcome | _Instances] = [{"regions": [], "ground_stats": stat} for stat in stats]
        for i, per_phrase in zip(todo, found, strict=True):
            dets = [
                {"phrase": phrase, "box": instance["box"], "box_score": instance["score"], "mask": instance["mask"]}
                for phrase, instances in zip(phrases[i], per_phrase, strict=True)
                for instance in instances
            ]
            results[i] = _Instances(dets, images[i].width, images[i].height, stats[i])
        return results

    def finish(self, sample: Sample, raw: Outcome | _Instances) -> Outcome:
        """A SAM 3 sample's instances filtered and their masks encoded (:meth:`_masked`); any other result as is."""
        if isinstance(raw, _Instances):
            return self._masked(raw.dets, raw.width, raw.height, raw.stats, sample)
        return raw

    def _masked(
        self, dets: list[dict[str, Any]], width: int, height: int, stats: dict[str, int], sample: Sample
    ) -> Update:
        """A sample's instances as regions with RLE masks (empty masks dropped), filtered as boxes are."""
        kept = [det for det in dets if det["mask"].any()]
        stats["dropped_empty_mask"] = len(dets) - len(kept)
        regions = self._regions(
            [cast(Region, {**det, "label": det["phrase"]}) for det in kept], width, height, stats, sample["phrases"]
        )
        masked = [
            {**region, "mask": encode_rle(cast(Any, region["mask"])), "mask_score": region["box_score"]}
            for region in regions
        ]
        return {"regions": masked, "ground_stats": stats}

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
