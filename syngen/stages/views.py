"""views: DynRefer multi-resolution views of every region (docs/methods.md#dynrefer-views).

Needs ``image`` and ``regions``; replaces ``regions``, adding to each region ``views``: a list of
``{"t": float, "box": [x1, y1, x2, y2], "region_box": [x1, y1, x2, y2], "size": int, "score": float | None}``,
ordered by ``t``. The view at ``t`` has the box ``b_t = (1 - t) * b + t * (0, 0, W, H)`` clipped to the image
(``box``, image pixels); its crop is that box resized to ``size`` x ``size``, and ``region_box`` is the region's
box in the crop's pixels. ``t = 0`` (the region alone) is always first; ``n_views - 1`` more come from
``candidates``: by pHash (``score(t) = Hamming(pHash(v_0), pHash(v_t)) / t``, highest first, ties to the smaller
``t``) or at random (seeded by seed, sample id and region; score None). Crops are not stored: cut them with
:func:`crop_view` when needed.

Example::

    stage = Views(Views.Config(n_views=3), ctx)
    [update] = stage.process([sample])
    view = update["regions"][0]["views"][1]
    crop = crop_view(load_image(sample), view["box"], view["size"])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.fftpack
from datasets import List, Value
from PIL import Image
from pydantic import Field, field_validator, model_validator

from syngen.columns import BOX, Column
from syngen.masks import clip_box
from syngen.sample import Region, Sample, View, item_seed, load_image
from syngen.settings import MAX_SIDE, Seed
from syngen.stages.base import Outcome, Stage, StageConfig


class ViewsConfig(StageConfig):
    """Settings of the views stage."""

    candidates: list[float] = Field(
        default_factory=lambda: [round(0.1 * i, 1) for i in range(1, 11)],
        description="Interpolation coefficients t in (0, 1] the extra views are chosen from (0 = region, 1 = image).",
    )
    n_views: int = Field(3, ge=1, description="Views per region: t = 0 plus n_views - 1 chosen from the candidates.")
    select: Literal["phash", "random"] = Field(
        "phash",
        description="phash: the candidates farthest from the region view by pHash distance / t; random: seeded.",
    )
    size: int = Field(224, ge=1, le=MAX_SIDE, description="Side of the square view crops, in pixels.")
    seed: Seed = Field(0, description="Seed of random selection (with sample id and region).")

    @field_validator("candidates")
    @classmethod
    def _candidates(cls, value: list[float]) -> list[float]:
        if not value or any(not 0 < t <= 1 for t in value) or len(set(value)) != len(value):
            raise ValueError("need distinct values in (0, 1]")  # the message shows an excerpt of the value
        return value

    @model_validator(mode="after")
    def _enough(self) -> ViewsConfig:
        if self.n_views - 1 > len(self.candidates):
            raise ValueError(f"n_views={self.n_views} needs at least {self.n_views - 1} candidates")
        return self


def view_box(box: Sequence[float], width: int, height: int, t: float) -> list[float]:
    """``(1 - t) * box + t * (0, 0, width, height)``, clipped to the image."""
    whole = (0.0, 0.0, width, height)
    return clip_box([(1 - t) * b + t * w for b, w in zip(box, whole, strict=True)], width, height)


def crop_view(image: Image.Image, box: Sequence[float], size: int) -> Image.Image:
    """The part of ``image`` under ``box`` (float pixel coordinates) resized to ``size`` x ``size`` (bilinear)."""
    if box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError(f"empty view box {list(box)}")
    left, top, right, bottom = (float(v) for v in box)
    return image.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, right, bottom))


def to_crop_coords(region_box: Sequence[float], view: Sequence[float], size: int) -> list[float]:
    """``region_box`` (image pixels) in the pixels of ``view``'s ``size`` x ``size`` crop, clipped to the crop."""
    sx = size / (view[2] - view[0])
    sy = size / (view[3] - view[1])
    box = [
        (region_box[0] - view[0]) * sx,
        (region_box[1] - view[1]) * sy,
        (region_box[2] - view[0]) * sx,
        (region_box[3] - view[1]) * sy,
    ]
    return clip_box(box, size, size)


# the side imagehash.phash resizes its input to (hash_size 8 x highfreq_factor 4)
HASH_SIDE = 32


def hash_thumbnail(gray: Image.Image, box: Sequence[float]) -> Image.Image:
    """The part of ``gray`` under ``box`` (float pixel coordinates) resized straight to the 32 x 32 pixels
    ``imagehash.phash`` works on: Lanczos, after a reduction by an integer factor with box averaging for large views
    (PIL's ``reducing_gap`` 2), from the integer crop around the box, so no pixel outside it leaks in through the
    filter."""
    left, top = math.floor(box[0]), math.floor(box[1])
    piece = gray.crop((left, top, math.ceil(box[2]), math.ceil(box[3])))
    inner = (box[0] - left, box[1] - top, box[2] - left, box[3] - top)
    return piece.resize((HASH_SIDE, HASH_SIDE), Image.Resampling.LANCZOS, box=inner, reducing_gap=2.0)


def phash_bits(thumbnails: Sequence[Image.Image]) -> np.ndarray:
    """(N, 8, 8) bools: ``imagehash.phash(thumbnail).hash`` of each 32 x 32 thumbnail (mode L), all in one call (the
    same DCT-II of scipy.fftpack along both axes, the 8 x 8 lowest frequencies above their median), cheaper than one
    ``imagehash.phash`` call each (docs/benchmarks.md#figures-behind-the-code)."""
    width, height = thumbnails[0].size
    pixels = np.frombuffer(b"".join([thumbnail.tobytes() for thumbnail in thumbnails]), np.uint8)
    pixels = pixels.reshape(len(thumbnails), height, width)
    # each line transforms alone, so the second DCT of the 8 lowest rows alone gives their values bit for bit
    low = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=1)[:, :8], axis=2)[:, :, :8]
    return low > np.median(low.reshape(len(low), -1), axis=1)[:, None, None]


def phash_scores(
    gray: Image.Image,
    box: Sequence[float],
    candidates: Sequence[float],
    thumbnails: dict[tuple[float, ...], Image.Image] | None = None,
) -> dict[float, float]:
    """``Hamming(pHash(v_0), pHash(v_t)) / t`` for each candidate ``t`` of the region ``box``; ``gray``: the image
    in mode L. Each view is hashed from its :func:`hash_thumbnail`, cut from the image in one resampling (not
    from its ``size`` x ``size`` crop, which costs a second; figures: docs/benchmarks.md#figures-behind-the-code).
    ``thumbnails``: those cut from ``gray`` so far by view box, added to (an image's regions share views: their
    t = 1 view is the whole image)."""
    width, height = gray.size
    kept = {} if thumbnails is None else thumbnails
    views = [tuple(view_box(box, width, height, t)) for t in [0.0, *candidates]]
    for view in views:
        if view not in kept:
            kept[view] = hash_thumbnail(gray, view)
    bits = phash_bits([kept[view] for view in views])
    distances = (bits[1:] != bits[0]).sum(axis=(1, 2))
    return {t: int(d) / t for t, d in zip(candidates, distances, strict=True)}


def select_views(scores: dict[float, float], n: int) -> list[float]:
    """The ``n`` candidates with the highest scores, best first; ties go to the smaller ``t``."""
    return sorted(scores, key=lambda t: (-scores[t], t))[:n]


class Views(Stage[ViewsConfig, None]):
    """Adds DynRefer views to every region (see the module docstring)."""

    name: ClassVar[str] = "views"
    needs: ClassVar[tuple[str, ...]] = ("image", "regions")
    adds: ClassVar[tuple[str, ...]] = ("regions",)
    publishes = {
        "regions": Column(
            List(
                {
                    "views": List(
                        {
                            "t": Value("float32"),
                            "box": BOX,
                            "region_box": BOX,
                            "size": Value("int32"),
                            "score": Value("float32"),
                        }
                    )
                }
            ),
            "each region's DynRefer `views`: `t` (0 = the region, 1 = the image), `box` in image pixels, "
            "`region_box` in the resized crop, `size`, `score` (pHash)",
        )
    }
    Config: ClassVar[type[StageConfig]] = ViewsConfig

    def process(self, samples: list[Sample], model: None = None) -> list[Outcome]:
        """One update per sample: ``regions`` with ``views``. Computed on this thread: the pHashes are many small
        steps that hold the GIL, so threads would queue for it (docs/benchmarks.md#figures-behind-the-code)."""
        return [self._views(s) for s in samples]

    def _views(self, sample: Sample) -> dict[str, Any]:
        """The sample's regions with their views."""
        cfg = self.config
        regions = sample.get("regions") or []
        if not regions:
            return {"regions": []}
        image = load_image(sample)
        gray = image.convert("L") if cfg.select == "phash" else None
        thumbnails: dict[tuple[float, ...], Image.Image] = {}
        out: list[Region] = []
        for i, region in enumerate(regions):
            if gray is not None:
                phash = phash_scores(gray, region["box"], cfg.candidates, thumbnails)
                chosen = select_views(phash, cfg.n_views - 1)
                scores: dict[float, float | None] = dict(phash)
            else:
                rng = np.random.default_rng(item_seed(cfg.seed, sample["id"], i))
                chosen = [float(t) for t in rng.choice(cfg.candidates, cfg.n_views - 1, replace=False)]
                scores = dict.fromkeys(chosen)
            views: list[View] = []
            for t in [0.0, *sorted(chosen)]:
                box = view_box(region["box"], image.width, image.height, t)
                views.append(
                    {
                        "t": t,
                        "box": box,
                        "region_box": to_crop_coords(region["box"], box, cfg.size),
                        "size": cfg.size,
                        "score": scores.get(t),
                    }
                )
            out.append({**region, "views": views})
        return {"regions": out}
