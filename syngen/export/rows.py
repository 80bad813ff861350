"""Rows of the published configs from final samples.

A ``grounding`` row holds each schema column taken from the sample and cut to its declared type (a struct keeps
only its declared fields, a missing list is empty, image bytes become an ``Image`` cell), plus the columns the
export makes: ``overlay`` and ``provenance``. ``preference`` rows join each region with each of its negatives (and
carry the image only when asked: by default a pair refers to it by ``image_id``). The rows of one sample share its
:class:`SampleMasks`: each mask is decoded once (the overlay and the pairs' PNGs) and each PNG encoded once.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
from datasets import Features, List
from datasets import Image as ImageFeature
from PIL import Image

from syngen.masks import RLE, decode_rle
from syngen.sample import ModelInfo, Provenance, Sample, image_bytes, load_image
from syngen.viz import draw_overlay


def project(value: Any, feature: Any) -> Any:
    """``value`` cut to ``feature``: struct fields not declared are dropped, None lists become empty."""
    if isinstance(feature, dict):
        return None if value is None else {key: project(value.get(key), sub) for key, sub in feature.items()}
    if isinstance(feature, List):
        return [project(item, feature.feature) for item in value or []]
    if isinstance(feature, ImageFeature):
        return None if value is None else {"bytes": value, "path": None}
    return value


class SampleMasks:
    """The masks of one sample: each RLE decoded once (:meth:`array`, kept) and each PNG encoded once
    (:meth:`png`), by its size and counts. Made anew for each sample, so it holds one sample's masks at most."""

    def __init__(self) -> None:
        self._arrays: dict[tuple[Any, ...], np.ndarray] = {}
        self._pngs: dict[tuple[Any, ...], bytes] = {}

    def array(self, rle: RLE) -> np.ndarray:
        """The (H, W) bool mask of ``rle``, kept for this sample's PNG of it."""
        key = _key(rle)
        if key not in self._arrays:
            self._arrays[key] = decode_rle(rle)
        return self._arrays[key]

    def png(self, rle: RLE) -> bytes:
        """``rle`` as a 1-bit PNG (white = mask), from the kept mask where :meth:`array` decoded it."""
        key = _key(rle)
        if key not in self._pngs:
            mask = self._arrays.get(key)
            self._pngs[key] = image_bytes(Image.fromarray(decode_rle(rle) if mask is None else mask))
        return self._pngs[key]


def _key(rle: RLE) -> tuple[Any, ...]:
    return (*rle["size"], rle["counts"])


def grounding_row(
    sample: Sample, features: Features, models: list[ModelInfo], masks: SampleMasks | None = None
) -> dict[str, Any]:
    """The ``grounding`` row of a final sample under ``features`` (see :func:`syngen.export.schema.build`);
    ``masks``: the sample's, shared with its :func:`preference_rows`."""
    row = {name: project(sample.get(name), feature) for name, feature in features.items()}
    if "overlay" in features:
        overlay = io.BytesIO()
        decode = (masks or SampleMasks()).array
        draw_overlay(load_image(sample), sample.get("regions") or [], decode=decode).save(
            overlay, format="JPEG", quality=80
        )
        row["overlay"] = {"bytes": overlay.getvalue(), "path": None}
    row["provenance"] = provenance(sample, models)
    return row


def provenance(sample: Sample, models: list[ModelInfo]) -> Provenance:
    """Where an exported image came from: its seed item, its synthesis (None when not synthesized), the models."""
    source: dict[str, Any] = dict(sample.get("source") or {})
    synth: dict[str, Any] = dict(sample.get("synth") or {})
    item = source.get("item")
    return {
        "source_kind": source.get("kind"),
        "source_item": item if item is None or isinstance(item, str) else json.dumps(item, sort_keys=True),
        "synth_seed": synth.get("seed"),
        "synth_index": synth.get("index"),
        "synth_parent": synth.get("parent"),
        "synth_prompt": synth.get("prompt"),
        "models": models,
    }


def preference_rows(
    sample: Sample, embed_images: bool = False, masks: SampleMasks | None = None
) -> list[dict[str, Any]]:
    """One row per (region, negative) of the sample; the id joins image id, region index and negative index. The
    image is in the row only with ``embed_images`` (else ``image_id`` finds it in ``grounding``). ``masks``: the
    sample's, shared with its :func:`grounding_row`."""
    masks = masks or SampleMasks()
    rows = []
    for r, region in enumerate(sample.get("regions") or []):
        if region.get("mask") is None or not region.get("negatives"):
            continue  # no pair: its mask's PNG is not needed
        chosen_png = masks.png(region["mask"])
        for n, negative in enumerate(region.get("negatives") or []):
            rows.append(
                {
                    "id": f"{sample['id']}-{r}-{n}",
                    "image_id": sample["id"],
                    "region_index": r,
                    **({"image": {"bytes": sample["image"], "path": None}} if embed_images else {}),
                    "prompt": region["phrase"],
                    "box": region["box"],
                    "chosen": region["mask"],
                    "rejected": negative["mask"],
                    "chosen_mask": {"bytes": chosen_png, "path": None},
                    "rejected_mask": {"bytes": masks.png(negative["mask"]), "path": None},
                    "kind": negative["kind"],
                    "iou": negative["iou"],
                    "chosen_score": region.get("mask_score"),
                    "rejected_score": negative.get("score"),
                    "points": negative.get("points") or [],
                    "labels": negative.get("labels") or [],
                    "seed": negative.get("seed"),
                    "multimask": bool(negative.get("multimask", False)),
                }
            )
    return rows
