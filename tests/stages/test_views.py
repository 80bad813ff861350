"""views stage: the view-box formula, clipping, region boxes in crop pixels, crops, and pHash selection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import imagehash
import numpy as np
import pytest
import scipy.fftpack
from PIL import Image
from pydantic import ValidationError

from syngen.sample import image_bytes
from syngen.stages.base import Context
from syngen.stages.views import (
    HASH_SIDE,
    Views,
    ViewsConfig,
    crop_view,
    hash_thumbnail,
    phash_bits,
    phash_scores,
    select_views,
    to_crop_coords,
    view_box,
)


def _run(config: ViewsConfig, samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return Views(config, Context(recipe_dir=Path("."))).process(samples)


def _sample(image: Image.Image, boxes: list[list[float]], sample_id: str = "s") -> dict[str, Any]:
    regions = [{"phrase": f"p{i}", "box": box, "box_score": 1.0} for i, box in enumerate(boxes)]
    return {
        "id": sample_id,
        "image": image_bytes(image),
        "width": image.width,
        "height": image.height,
        "regions": regions,
    }


def _framed_noise() -> Image.Image:
    """100 x 100 noise with a uniform grey square [15, 85) x [15, 85): views of the box [40, 40, 60, 60] stay grey
    up to t = 0.6 ([16, 16, 84, 84]) and take in noise from t = 0.7 ([12, 12, 88, 88]) on."""
    pixels = np.random.default_rng(0).integers(0, 256, (100, 100, 3), dtype=np.uint8)
    pixels[15:85, 15:85] = 128
    return Image.fromarray(pixels)


@pytest.mark.parametrize(
    "box,t,expected",
    [
        ([40, 40, 60, 60], 0.0, [40, 40, 60, 60]),
        ([40, 40, 60, 60], 0.5, [20, 20, 80, 70]),
        ([40, 40, 60, 60], 1.0, [0, 0, 100, 80]),
        ([10, 20, 30, 40], 0.25, [7.5, 15, 47.5, 50]),
        ([-10, 5, 50, 90], 0.2, [0, 4, 60, 80]),
    ],
    ids=["t0-region", "t0.5", "t1-image", "t0.25", "clipped"],
)
def test_view_box_follows_the_formula(box: list[float], t: float, expected: list[float]) -> None:
    assert view_box(box, 100, 80, t) == pytest.approx(expected)


@pytest.mark.parametrize(
    "region,view,size,expected",
    [
        ([40, 40, 60, 60], [20, 20, 80, 70], 224, [20 * 224 / 60, 20 * 224 / 50, 40 * 224 / 60, 40 * 224 / 50]),
        ([40, 40, 60, 60], [40, 40, 60, 60], 224, [0, 0, 224, 224]),
        ([-10, 5, 50, 90], [0, 4, 60, 80], 30, [0, 30 / 76, 25, 30]),
    ],
    ids=["inside", "same-box", "region-overhangs-image"],
)
def test_region_box_in_crop_pixels(region: list[float], view: list[float], size: int, expected: list[float]) -> None:
    assert to_crop_coords(region, view, size) == pytest.approx(expected)


def test_crop_view_cuts_and_resizes_the_box() -> None:
    pixels = np.zeros((40, 60, 3), np.uint8)
    pixels[:20, :40] = (255, 0, 0)
    pixels[20:, 40:] = (0, 0, 255)
    image = Image.fromarray(pixels)
    crop = np.asarray(crop_view(image, [2, 2, 18, 18], 8))
    assert crop.shape == (8, 8, 3) and (crop == (255, 0, 0)).all()
    half = np.asarray(crop_view(image, [0, 10, 30, 30], 16))  # top half red, bottom half black
    assert (half[:7] == (255, 0, 0)).all() and (half[9:] == 0).all()
    with pytest.raises(ValueError):
        crop_view(image, [5, 5, 5, 10], 8)


@pytest.mark.parametrize(
    "box,inside",
    [
        ([20.0, 10.0, 40.0, 30.0], True),
        ([20.5, 10.25, 39.5, 29.75], True),
        ([0.0, 0.0, 60.0, 40.0], False),
        ([10.0, 10.0, 12.0, 11.0], True),
    ],
    ids=["integer-box", "fractional-box", "whole-image", "smaller-than-thumbnail"],
)
def test_hash_thumbnail_is_32_pixels_of_the_view_alone(box: list[float], inside: bool) -> None:
    pixels = np.zeros((40, 60), np.uint8)
    pixels[10:30, 10:40] = 200  # a grey block in black: views inside it must see no black through the filter
    thumb = np.asarray(hash_thumbnail(Image.fromarray(pixels), box))
    assert thumb.shape == (HASH_SIDE, HASH_SIDE)
    if inside:
        assert (thumb == 200).all()
    else:
        assert thumb.min() == 0 and thumb.max() >= 200  # both (Lanczos rings a little above 200)


def _thumbnail(kind: str) -> Image.Image:
    rng = np.random.default_rng(len(kind))
    pixels = {
        "noise": lambda: rng.integers(0, 256, (32, 32)),
        "uniform-grey": lambda: np.full((32, 32), 128),
        "uniform-black": lambda: np.zeros((32, 32)),
        "two-halves": lambda: np.repeat([[0] * 16 + [200] * 16], 32, axis=0),
        "gradient": lambda: np.add.outer(np.arange(32), np.arange(32)) * 4,
    }[kind]()
    return Image.fromarray(pixels.astype(np.uint8))


THUMBNAILS = ["noise", "uniform-grey", "uniform-black", "two-halves", "gradient"]


def test_phash_bits_equal_imagehash_phash() -> None:
    thumbnails = [_thumbnail(kind) for kind in THUMBNAILS]
    bits = phash_bits(thumbnails)
    for kind, thumbnail, mine in zip(THUMBNAILS, thumbnails, bits, strict=True):
        assert np.array_equal(mine, imagehash.phash(thumbnail).hash), kind


def _phash_bits_from_every_frequency(thumbnails: list[Image.Image]) -> np.ndarray:
    """phash_bits as it was first written: both DCTs over all 32 lines, then the 8 x 8 lowest (the reference)."""
    pixels = np.stack([np.asarray(thumbnail) for thumbnail in thumbnails])
    low = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=1), axis=2)[:, :8, :8]
    return low > np.median(low.reshape(len(low), -1), axis=1)[:, None, None]


def _random_thumbnails(count: int, kind: str, seed: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    if kind == "noise":
        pixels = rng.integers(0, 256, (count, 32, 32))
    elif kind == "smooth":  # few grey levels: many ties at the median
        pixels = rng.integers(0, 4, (count, 1, 1)) + np.add.outer(np.arange(32), np.arange(32)) // 16
    else:  # photo-like: blurred noise
        noise = rng.integers(0, 256, (count, 40, 40)).astype(float)
        pixels = sum(noise[:, i : i + 32, j : j + 32] for i in range(9) for j in range(9)) / 81
    return [Image.fromarray(p.astype(np.uint8)) for p in pixels]


PHASH_BATCHES = [(count, kind) for count in (1, 2, 3, 11, 12, 37) for kind in ("noise", "smooth", "blurred")]


@pytest.mark.parametrize(("count", "kind"), PHASH_BATCHES, ids=[f"{k}-x{c}" for c, k in PHASH_BATCHES])
def test_phash_bits_equal_the_transform_of_every_frequency(count: int, kind: str) -> None:
    for seed in range(20):
        thumbnails = _random_thumbnails(count, kind, seed)
        assert np.array_equal(phash_bits(thumbnails), _phash_bits_from_every_frequency(thumbnails))
        pixels = np.stack([np.asarray(t) for t in thumbnails])
        every = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=1), axis=2)[:, :8, :8]
        rows = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=1)[:, :8], axis=2)[:, :, :8]
        assert every.tobytes() == rows.tobytes()  # bit for bit, not only the hash bits


SHARED_VIEWS = {
    "separate-regions": [[10.0, 10.0, 30.0, 40.0], [50.5, 20.25, 90.0, 60.75], [0.0, 70.0, 15.0, 100.0]],
    "the-same-box-twice": [[20.0, 20.0, 60.0, 50.0], [20.0, 20.0, 60.0, 50.0]],
    "a-region-that-is-the-image": [[0.0, 0.0, 100.0, 100.0], [40.0, 40.0, 60.0, 60.0]],
    "one-region": [[33.3, 12.1, 77.7, 45.9]],
}


@pytest.mark.parametrize("boxes", SHARED_VIEWS.values(), ids=SHARED_VIEWS.keys())
def test_phash_scores_with_shared_thumbnails_equal_those_cut_for_each_region(boxes: list[list[float]]) -> None:
    gray = _framed_noise().convert("L")
    candidates = [round(0.1 * i, 1) for i in range(1, 11)]
    shared: dict[tuple[float, ...], Image.Image] = {}
    for box in boxes:
        assert phash_scores(gray, box, candidates, shared) == phash_scores(gray, box, candidates)
    assert (0.0, 0.0, 100.0, 100.0) in shared  # the whole image: every region's t = 1 view, cut once
    assert len(shared) <= len(boxes) * 10 + 1


def test_phash_selects_the_views_that_differ_most_per_t() -> None:
    image = _framed_noise()
    box = [40.0, 40.0, 60.0, 60.0]
    candidates = [round(0.1 * i, 1) for i in range(1, 11)]
    gray = image.convert("L")
    region = imagehash.phash(hash_thumbnail(gray, view_box(box, 100, 100, 0))).hash
    expected = {}
    for t in candidates:
        view = imagehash.phash(hash_thumbnail(gray, view_box(box, 100, 100, t))).hash
        expected[t] = np.count_nonzero(view != region) / t
    assert all(expected[t] == 0 for t in candidates if t <= 0.6)  # grey views hash like the grey region view
    assert all(expected[t] > 0 for t in candidates if t >= 0.7)
    best = sorted(candidates, key=lambda t: expected[t], reverse=True)[:2]
    scores = phash_scores(gray, box, candidates)
    assert scores == pytest.approx(expected) and all(type(score) is float for score in scores.values())
    # hashing the 224 x 224 crops instead picks the same views
    crop = imagehash.phash(crop_view(image, box, 224))
    from_crops = {
        t: (crop - imagehash.phash(crop_view(image, view_box(box, 100, 100, t), 224))) / t for t in candidates
    }
    assert select_views(from_crops, 2) == select_views(scores, 2)

    [update] = _run(ViewsConfig(n_views=3), [_sample(image, [box])])
    views = update["regions"][0]["views"]
    assert [v["t"] for v in views] == [0.0, *sorted(best)]
    assert [v["score"] for v in views] == [None, *(pytest.approx(expected[t]) for t in sorted(best))]
    for v in views:
        assert v["box"] == pytest.approx(view_box(box, 100, 100, v["t"])) and v["size"] == 224
        assert v["region_box"] == pytest.approx(to_crop_coords(box, v["box"], 224))
    assert views[0]["region_box"] == pytest.approx([0, 0, 224, 224])


@pytest.mark.parametrize(
    "scores,n,expected",
    [
        ({0.1: 1.0, 0.5: 3.0, 1.0: 2.0}, 2, [0.5, 1.0]),
        ({0.3: 2.0, 0.2: 2.0, 0.9: 1.0}, 2, [0.2, 0.3]),
        ({0.4: 0.0, 0.1: 0.0}, 1, [0.1]),
        ({0.1: 5.0}, 0, []),
    ],
    ids=["by-score", "tie-smaller-t", "all-zero", "none-wanted"],
)
def test_select_views(scores: dict[float, float], n: int, expected: list[float]) -> None:
    assert select_views(scores, n) == expected


def test_uniform_image_ties_go_to_the_smallest_t() -> None:
    image = Image.new("RGB", (50, 40), (10, 200, 30))
    [update] = _run(ViewsConfig(n_views=4), [_sample(image, [[10, 10, 20, 30]])])
    views = update["regions"][0]["views"]
    assert [v["t"] for v in views] == [0.0, 0.1, 0.2, 0.3] and [v["score"] for v in views] == [None, 0, 0, 0]


def test_random_selection_is_seeded_and_distinct() -> None:
    image = _framed_noise()
    sample = _sample(image, [[40, 40, 60, 60], [10, 10, 30, 30], [50, 20, 90, 40], [5, 60, 25, 95]])
    config = ViewsConfig(select="random", n_views=4)
    [first] = _run(config, [sample])
    assert first == _run(config, [sample])[0]
    chosen = [[v["t"] for v in r["views"]] for r in first["regions"]]
    for ts in chosen:
        assert ts[0] == 0.0 and len(set(ts)) == 4 and ts[1:] == sorted(ts[1:])
        assert set(ts[1:]) <= set(config.candidates)
    assert all(v["score"] is None for r in first["regions"] for v in r["views"])
    assert len({tuple(ts) for ts in chosen}) > 1  # each region draws its own views
    other = _run(ViewsConfig(select="random", n_views=4, seed=1), [sample])[0]
    assert [[v["t"] for v in r["views"]] for r in other["regions"]] != chosen


def test_one_view_and_no_regions() -> None:
    image = _framed_noise()
    [one, none] = _run(ViewsConfig(n_views=1), [_sample(image, [[40, 40, 60, 60]]), _sample(image, [], "e")])
    assert [v["t"] for v in one["regions"][0]["views"]] == [0.0]
    assert none == {"regions": []}


@pytest.mark.parametrize(
    "fields",
    [
        {"candidates": [0.0, 0.5]},
        {"candidates": [0.5, 1.2]},
        {"candidates": []},
        {"candidates": [0.5, 0.5]},
        {"n_views": 0},
        {"n_views": 4, "candidates": [0.5, 1.0]},
        {"select": "best"},
        {"size": 0},
    ],
    ids=[
        "t-zero",
        "t-above-1",
        "no-candidates",
        "duplicates",
        "no-views",
        "too-few-candidates",
        "unknown-select",
        "size-zero",
    ],
)
def test_config_rejects_bad_values(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ViewsConfig(**fields)


def test_config_fields_carry_help_text() -> None:
    assert all(field.description for field in ViewsConfig.model_fields.values())
