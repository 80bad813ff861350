"""negatives: SAM-perturbed hard negative masks for every region (FG-DPA; METHODS.md §2).

Needs ``image`` and ``regions`` (with ``mask`` from the segment stage); replaces ``regions``, adding to each
region ``negatives``: a list of ``{"kind": "boundary"|"semantic", "points": [[x, y], ...], "labels": [1|0, ...],
"iou": float, "seed": int, "mask": RLE, "score": float, "multimask": bool}``, and adds ``negatives_stats``.

- boundary: the region's box plus ``points`` points inside it, each either a positive point on a pixel inside the
  box but outside the mask (overflow) or a negative point on the mask near its edge (omission), the kind drawn
  at random (or the kind that has pixels); accepted when the IoU with the positive mask lies in ``iou_band``.
- semantic: one positive point outside the region's box, no box; accepted when the IoU with the positive mask is
  at most ``semantic_max_iou`` and at most ``semantic_max_inside_box`` of the negative lies inside the box.
  A single click is ambiguous, so SAM gives its three masks and the one with the highest predicted IoU is taken
  (``multimask`` true); boundary prompts (box and points) use SAM's single-mask output (``multimask`` false).

Empty masks, a mask equal to the positive (IoU 1.0, whatever the bounds say: chosen and rejected must differ) and
a mask equal to one already accepted for the region are rejected too. Each wanted negative
(a slot: region, kind, slot number) gets up to ``max_tries`` attempts; attempt ``a`` draws its points from
``attempt_seed(seed, sample id, region, kind, slot, a)``, the seed recorded with the negative. The image
embedding comes from the segmenter's cache (the segment stage's ``embed`` under the sample id), and all
attempts of one round on one image go through one ``predict`` call per kind.

``negatives_stats``: ``boundary_accepted``, ``semantic_accepted``, ``tries`` (SAM prompts run) and ``gave_up``
(slots left without a negative: retry limit reached, or no mask / no pixel to draw points from). Identity:
``boundary_accepted + semantic_accepted + gave_up == regions * (boundary_per_mask + semantic_per_mask)``, and
``accepted <= tries <= max_tries * (boundary_per_mask + semantic_per_mask) * regions``.

Example::

    stage = Negatives(NegativesConfig(model="tiny:segmenter"), ctx)
    [update] = stage.process([sample], segmenter)  # the adapter the segment stage embedded the images with
    update["regions"][0]["negatives"][0]["kind"]  # "boundary"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, field_validator

from syngen.masks import box_mask, clip_box, decode_rle, edge_band, encode_rle, mask_iou, share_in_box
from syngen.models.roles import Role, Segmenter
from syngen.refs import ModelRef
from syngen.sample import Region, Sample, item_seed, load_image
from syngen.stages.base import ModelStageConfig, Result, Stage, StageConfig

Points = tuple[list[list[int]], list[int]]
STATS = ("boundary_accepted", "semantic_accepted", "tries", "gave_up")


class NegativesConfig(ModelStageConfig):
    """Settings of the negatives stage."""

    model: ModelRef | None = Field(
        None, description="Segmenter; None reuses the segment stage's model and its cached image embeddings."
    )
    boundary_per_mask: int = Field(2, ge=0, description="Boundary negatives wanted per region.")
    semantic_per_mask: int = Field(1, ge=0, description="Semantic negatives wanted per region.")
    points: int = Field(3, ge=1, description="Point prompts (k) added to the box for a boundary negative.")
    iou_band: tuple[float, float] = Field(
        (0.5, 0.9),
        description="[lo, hi], 0 <= lo < hi < 1: a boundary negative's IoU with the positive mask must lie in it.",
    )
    semantic_max_iou: float = Field(
        0.05, ge=0, le=1, description="Largest IoU of a semantic negative with the positive mask."
    )
    semantic_max_inside_box: float = Field(
        0.2, ge=0, le=1, description="Largest share of a semantic negative's pixels inside the positive box."
    )
    edge_band: float = Field(
        0.1,
        gt=0,
        le=1,
        description="Width of the band along the mask's edge where omission points are drawn, as a share of the "
        "box's shorter side (at least 1 pixel).",
    )
    max_tries: int = Field(10, ge=1, description="SAM attempts per wanted negative before giving up.")
    seed: int = Field(0, ge=0, description="Seed of the point sampling (with sample id, region, kind, slot, try).")

    @field_validator("iou_band")
    @classmethod
    def _band(cls, value: tuple[float, float]) -> tuple[float, float]:
        lo, hi = value
        if not 0 <= lo < hi < 1:  # hi = 1 would accept the positive mask itself as its negative
            raise ValueError(f"need 0 <= lo < hi < 1, got [{lo}, {hi}]")
        return value


def attempt_seed(seed: int, sample_id: str, region: int, kind: str, slot: int, attempt: int) -> int:
    """The seed of one attempt's point sampling (60 bits: fits int64 columns)."""
    return item_seed(seed, sample_id, region, kind, slot, attempt, bits=60)


def boundary_candidates(mask: np.ndarray, box: list[float], edge_share: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixels to draw boundary points from: (inside box and outside mask, on the mask's edge band inside box)."""
    inside = box_mask(box, *mask.shape)
    width = max(1, round(edge_share * min(box[2] - box[0], box[3] - box[1])))
    return inside & ~mask, inside & edge_band(mask, width)


def boundary_prompt(overflow: np.ndarray, omission: np.ndarray, k: int, seed: int) -> Points:
    """``k`` points: label 1 on an overflow pixel or label 0 on an omission pixel, each kind drawn at random.

    Needs at least one pixel in ``overflow`` or ``omission``.
    """
    rng = np.random.default_rng(seed)
    pools = (np.flatnonzero(omission), np.flatnonzero(overflow))  # indexed by label
    width = overflow.shape[1]
    points, labels = [], []
    for _ in range(k):
        label = int(rng.random() < 0.5) if len(pools[0]) and len(pools[1]) else int(len(pools[1]) > 0)
        points.append(_pixel(pools[label], width, rng))
        labels.append(label)
    return points, labels


def semantic_prompt(outside: np.ndarray, seed: int) -> Points:
    """One positive point on a pixel of ``outside`` (the pixels outside the positive box; needs one)."""
    rng = np.random.default_rng(seed)
    return [_pixel(np.flatnonzero(outside), outside.shape[1], rng)], [1]


def _pixel(flat: np.ndarray, width: int, rng: np.random.Generator) -> list[int]:
    y, x = divmod(int(flat[rng.integers(len(flat))]), width)
    return [x, y]


@dataclass
class _Slot:
    """One wanted negative: the region it belongs to, its kind and number, and the pixels its points come from."""

    region: int
    kind: str
    number: int
    pools: tuple[np.ndarray, ...]
    done: bool = False


class Negatives(Stage[NegativesConfig, Segmenter]):
    """Adds SAM-perturbed boundary and semantic hard negatives to every region (see the module docstring)."""

    name: ClassVar[str] = "negatives"
    needs: ClassVar[tuple[str, ...]] = ("image", "regions")
    adds: ClassVar[tuple[str, ...]] = ("regions", "negatives_stats")
    Config: ClassVar[type[StageConfig]] = NegativesConfig
    role: ClassVar[Role | None] = "segmenter"
    default_backend: ClassVar[str | None] = "sam"

    def process(self, samples: list[Sample], model: Segmenter) -> list[Result]:
        """One update per sample: ``regions`` with ``negatives``, and ``negatives_stats``."""
        todo = [s for s in samples if any(r.get("mask") for r in s.get("regions") or [])]
        if todo:  # a cache hit for images the segment stage embedded
            model.embed([load_image(s) for s in todo], [s["id"] for s in todo])
        return [self._negatives(model, s) for s in samples]

    def _negatives(self, model: Segmenter, sample: Sample) -> dict[str, Any]:
        cfg = self.config
        regions: list[Region] = [{**r, "negatives": []} for r in sample.get("regions") or []]
        stats = dict.fromkeys(STATS, 0)
        positives: dict[int, tuple[np.ndarray, list[float]]] = {}
        slots: list[_Slot] = []
        for i, region in enumerate(regions):
            mask = decode_rle(region["mask"]) if region.get("mask") else None
            if mask is None or not mask.any():
                stats["gave_up"] += cfg.boundary_per_mask + cfg.semantic_per_mask
                continue
            box = clip_box(region["box"], mask.shape[1], mask.shape[0])
            positives[i] = mask, box
            pools = {
                "boundary": boundary_candidates(mask, box, cfg.edge_band),
                "semantic": (~box_mask(box, *mask.shape),),
            }
            for kind, wanted in (("boundary", cfg.boundary_per_mask), ("semantic", cfg.semantic_per_mask)):
                if any(pool.any() for pool in pools[kind]):
                    slots += [_Slot(i, kind, n, pools[kind]) for n in range(wanted)]
                else:
                    stats["gave_up"] += wanted

        for attempt in range(cfg.max_tries):
            for kind in ("boundary", "semantic"):
                batch = [s for s in slots if s.kind == kind and not s.done]
                if batch:
                    stats["tries"] += len(batch)
                    self._round(model, sample["id"], kind, attempt, batch, positives, regions, stats)
        stats["gave_up"] += sum(not s.done for s in slots)
        return {"regions": regions, "negatives_stats": stats}

    def _round(
        self,
        model: Segmenter,
        key: str,
        kind: str,
        attempt: int,
        batch: list[_Slot],
        positives: dict[int, tuple[np.ndarray, list[float]]],
        regions: list[Region],
        stats: dict[str, int],
    ) -> None:
        """One attempt for every slot in ``batch`` (all of one kind), in one predict call; records acceptances."""
        cfg = self.config
        seeds = [attempt_seed(cfg.seed, key, s.region, kind, s.number, attempt) for s in batch]
        if kind == "boundary":
            prompts = [
                boundary_prompt(s.pools[0], s.pools[1], cfg.points, seed) for s, seed in zip(batch, seeds, strict=True)
            ]
            boxes = np.array([positives[s.region][1] for s in batch], dtype=np.float32)
        else:
            prompts = [semantic_prompt(s.pools[0], seed) for s, seed in zip(batch, seeds, strict=True)]
            boxes = None
        multimask = kind == "semantic"  # a single click: the best of SAM's three masks
        masks, scores = model.predict(
            key,
            boxes=boxes,
            points=np.array([p for p, _ in prompts], dtype=np.float32),
            labels=np.array([labels for _, labels in prompts], dtype=np.int64),
            multimask=multimask,
        )
        for slot, seed, (points, labels), negative, score in zip(batch, seeds, prompts, masks, scores, strict=True):
            positive, box = positives[slot.region]
            iou = mask_iou(negative, positive)
            accepted = regions[slot.region]["negatives"]
            if not self._acceptable(kind, negative, iou, box) or any(
                np.array_equal(negative, decode_rle(n["mask"])) for n in accepted
            ):
                continue
            accepted.append(
                {
                    "kind": kind,
                    "points": points,
                    "labels": labels,
                    "iou": iou,
                    "seed": seed,
                    "mask": encode_rle(negative),
                    "score": float(score),
                    "multimask": multimask,
                }
            )
            slot.done = True
            stats[f"{kind}_accepted"] += 1

    def _acceptable(self, kind: str, negative: np.ndarray, iou: float, box: list[float]) -> bool:
        """Whether a candidate mask is non-empty, differs from the positive and meets the bounds of its kind."""
        cfg = self.config
        if not negative.any() or iou >= 1.0:
            return False
        if kind == "boundary":
            return cfg.iou_band[0] <= iou <= cfg.iou_band[1]
        return iou <= cfg.semantic_max_iou and share_in_box(negative, box) <= cfg.semantic_max_inside_box
