"""Export rows: a sample's masks are decoded once and each PNG encoded once, with the bytes and overlay pixels the
sample gives when every mask is decoded and encoded on its own."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from PIL import Image

from syngen.export import rows as export_rows
from syngen.export import schemas
from syngen.export.rows import SampleMasks, grounding_row, preference_rows
from syngen.masks import decode_rle, encode_rle
from syngen.sample import decode, image_bytes
from syngen.viz import draw_overlay
from tests.export.test_export import HEIGHT, WIDTH, make_region, make_sample, rect_mask

GROUNDING = schemas()["grounding"].features


def speckled(seed: int, share: float) -> np.ndarray:
    """A mask with ``share`` of its pixels set at random: many short runs."""
    return np.random.default_rng(seed).random((HEIGHT, WIDTH)) < share


def with_negatives(region: dict[str, Any], *masks: np.ndarray) -> dict[str, Any]:
    """``region`` with one negative per mask (kind, IoU and the rest as make_region gives them)."""
    template = make_region((10, 10, 50, 40), kinds=("boundary",))["negatives"][0]
    return region | {"negatives": [template | {"mask": encode_rle(mask)} for mask in masks]}


def region(mask: np.ndarray, phrase: str = "thing") -> dict[str, Any]:
    return make_region((10, 10, 50, 40), phrase=phrase) | {"mask": encode_rle(mask)}


EMPTY, FULL = np.zeros((HEIGHT, WIDTH), bool), np.ones((HEIGHT, WIDTH), bool)
CASES = {
    "plain-regions": [
        make_region((10, 10, 50, 40), kinds=("boundary", "semantic")),
        make_region((60, 20, 100, 80), kinds=("semantic",)),
    ],
    "negative-equals-another-regions-mask": [  # an `instance` negative: another region's chosen mask
        with_negatives(region(rect_mask(0, 0, 20, 20)), rect_mask(40, 40, 60, 60)),
        with_negatives(region(rect_mask(40, 40, 60, 60)), rect_mask(0, 0, 20, 20), speckled(1, 0.5)),
    ],
    "two-regions-one-mask": [
        with_negatives(region(speckled(2, 0.3)), speckled(3, 0.3)),
        with_negatives(region(speckled(2, 0.3), "other"), speckled(3, 0.3), speckled(2, 0.3)),
    ],
    "empty-and-full-masks": [with_negatives(region(EMPTY), FULL, EMPTY), with_negatives(region(FULL), EMPTY)],
    "regions-without-mask-or-negatives": [
        {"phrase": "ball", "box": [1.0, 2.0, 30.0, 40.0], "box_score": 0.9},
        region(speckled(4, 0.7)),
        with_negatives(region(speckled(5, 0.1)), speckled(6, 0.9)),
    ],
    "no-regions": [],
}


def one_by_one_png(rle: dict[str, Any]) -> bytes:
    """The PNG of a mask decoded and encoded on its own (the way before masks were shared)."""
    return image_bytes(Image.fromarray(decode_rle(rle)))


@pytest.mark.parametrize("regions", list(CASES.values()), ids=list(CASES))
def test_shared_masks_give_the_bytes_of_masks_made_one_by_one(regions: list[dict[str, Any]]) -> None:
    sample = make_sample(0, regions)
    masks = SampleMasks()
    row = grounding_row(sample, GROUNDING, [], masks)
    pairs = preference_rows(sample, masks=masks)
    expected_pairs = [
        (r, n, one_by_one_png(reg["mask"]), one_by_one_png(neg["mask"]))
        for r, reg in enumerate(regions)
        if reg.get("mask") is not None
        for n, neg in enumerate(reg.get("negatives") or [])
    ]
    assert [(p["region_index"], int(p["id"].rsplit("-", 1)[1])) for p in pairs] == [e[:2] for e in expected_pairs]
    assert [(p["chosen_mask"]["bytes"], p["rejected_mask"]["bytes"]) for p in pairs] == [e[2:] for e in expected_pairs]
    picture = decode(sample["image"])
    alone = np.asarray(draw_overlay(picture, regions))  # every mask decoded by draw_overlay itself
    shared = np.asarray(draw_overlay(picture, regions, decode=SampleMasks().array))
    assert np.array_equal(shared, alone)
    assert row["overlay"]["bytes"] == grounding_row(sample, GROUNDING, [])["overlay"]["bytes"]


@pytest.mark.parametrize("regions", list(CASES.values()), ids=list(CASES))
def test_each_distinct_mask_is_decoded_once_per_sample(
    regions: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[str] = []

    def counting(rle: dict[str, Any]) -> np.ndarray:
        decoded.append(rle["counts"])
        return decode_rle(rle)

    monkeypatch.setattr(export_rows, "decode_rle", counting)
    sample = make_sample(0, regions)
    masks = SampleMasks()
    grounding_row(sample, GROUNDING, [], masks)
    preference_rows(sample, masks=masks)
    used = {r["mask"]["counts"] for r in regions if r.get("mask") is not None}  # the overlay's
    used |= {n["mask"]["counts"] for r in regions if r.get("mask") is not None for n in r.get("negatives") or []}
    assert sorted(decoded) == sorted(used)
