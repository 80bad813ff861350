"""Viz: overlay pixels land where the masks and boxes are; contact sheets and the HTML page respect n."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from syngen.export import export_dataset
from syngen.masks import encode_rle
from syngen.stages.source import SourceConfig
from syngen.viz import (
    BOTH,
    CHOSEN,
    COLOUR_BAR,
    HIT,
    MISS,
    PALETTE,
    REJECTED,
    TAG_BAND,
    TILE,
    contact_sheet,
    draw_difference,
    draw_heatmap,
    draw_overlay,
    heatmap_sheet,
)
from tests.export.test_export import GREY, HEIGHT, WIDTH, make_info, make_region, make_sample, rect_mask
from tests.helpers import draw_shapes

ALPHA = 0.45


def blended(colour: tuple[int, int, int]) -> np.ndarray:
    """What a grey pixel becomes under a mask of ``colour`` (computed apart from draw_overlay's code)."""
    return np.round((1 - ALPHA) * np.array(GREY) + ALPHA * np.array(colour)).astype(int)


def grey() -> Image.Image:
    return Image.new("RGB", (WIDTH, HEIGHT), GREY)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(int)


@pytest.mark.parametrize(
    ("box", "mask_box"),
    [((10, 30, 70, 90), (20, 40, 60, 80)), ((64, 8, 128, 96), (70, 30, 120, 90)), ((0, 0, 50, 50), (0, 0, 50, 50))],
    ids=["mask-inside-box", "box-at-right-edge", "mask-fills-box-at-origin"],
)
def test_mask_colour_inside_and_not_outside(box: tuple, mask_box: tuple) -> None:
    mask = rect_mask(*mask_box)
    out = pixels(draw_overlay(grey(), [{"phrase": "", "box": list(box), "mask": encode_rle(mask)}]))
    x1, y1, x2, y2 = box
    interior = mask.copy()
    interior[: y1 + 3], interior[y2 - 3 :], interior[:, : x1 + 3], interior[:, x2 - 3 :] = False, False, False, False
    assert (out[interior] == blended(PALETTE[0])).all()
    outside_box = np.ones_like(mask)
    outside_box[max(0, y1 - 1) : y2 + 1, max(0, x1 - 1) : x2 + 1] = False
    assert (out[outside_box] == GREY).all()
    assert (out[~mask & ~outside_box] != blended(PALETTE[0])).all(axis=-1).all()  # no mask colour outside the mask


def test_box_outline_and_label_in_the_region_colour() -> None:
    regions = [{"phrase": "cup", "box": [20.0, 40.0, 60.0, 80.0]}, {"phrase": "dog", "box": [70.0, 30.0, 120.0, 90.0]}]
    out = pixels(draw_overlay(grey(), regions))
    assert (out[60, 20] == PALETTE[0]).all() and (out[79, 40] == PALETTE[0]).all()  # left and bottom edges
    assert (out[60, 70] == PALETTE[1]).all() and (out[60, 119] == PALETTE[1]).all()
    assert (out[60, 40] == GREY).all()  # no mask: the inside stays as it was
    label = out[:40, 20:60]  # just above the first box
    assert ((label == PALETTE[0]).all(axis=-1)).sum() > 20
    assert ((label != PALETTE[0]) & (label != GREY)).any(axis=-1).sum() > 5  # the text's ink


def test_palette_override_and_overlapping_masks() -> None:
    masks = [rect_mask(10, 10, 60, 60), rect_mask(40, 40, 100, 90)]
    regions = [{"phrase": "", "box": [0.0, 0.0, 1.0, 1.0], "mask": encode_rle(m)} for m in masks]
    out = pixels(draw_overlay(grey(), regions, palette=[CHOSEN, REJECTED]))
    assert (out[20, 20] == blended(CHOSEN)).all() and (out[80, 90] == blended(REJECTED)).all()
    overlap = np.round((1 - ALPHA) * blended(CHOSEN) + ALPHA * np.array(REJECTED)).astype(int)
    assert np.abs(out[50, 50] - overlap).max() <= 1


def test_no_regions_leaves_the_image_unchanged() -> None:
    picture = draw_shapes()
    assert (pixels(draw_overlay(picture, [])) == pixels(picture)).all()


def test_mask_of_another_size_is_refused() -> None:
    region = {"phrase": "", "box": [0.0, 0.0, 5.0, 5.0], "mask": encode_rle(np.ones((10, 10), bool))}
    with pytest.raises(ValueError, match="size"):
        draw_overlay(grey(), [region])


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five images: the first with no regions, the others one region with a boundary and a semantic negative."""
    out = tmp_path_factory.mktemp("out")
    samples = [make_sample(0, [])]
    samples += [make_sample(i, [make_region((10, 10, 50, 40), kinds=("boundary", "semantic"))]) for i in range(1, 5)]
    samples[1]["caption"] = "a <b>bold</b> & caption"
    export_dataset(samples, out, make_info(), shard_rows=2)
    return out


@pytest.mark.parametrize(
    ("n", "sheet_size", "pairs_size"),
    [(1, (1, 1), (1, 1)), (3, (2, 2), (2, 2)), (5, (3, 2), (3, 2)), (16, (3, 2), (3, 3))],
    ids=["one", "three", "five", "more-than-there-are"],
)
def test_contact_sheets_respect_n(out: Path, n: int, sheet_size: tuple, pairs_size: tuple) -> None:
    """n samples (5 at most) and n pairs (8 at most) in square-ish grids of tiles."""
    sheet, pairs = contact_sheet(out, n)
    assert (sheet, pairs) == (out / "inspect/contact_sheet.png", out / "inspect/preference.png")
    columns, rows = sheet_size
    assert Image.open(sheet).size == (columns * TILE, rows * TILE)
    columns, rows = pairs_size
    assert Image.open(pairs).size == (columns * TILE, rows * TILE)


def test_sheet_tiles_show_the_overlay(out: Path) -> None:
    sheet, _ = contact_sheet(out, 2)
    image = pixels(Image.open(sheet).convert("RGB"))
    scale = TILE / WIDTH  # 128 x 96 images fill the tile's width, centred vertically under the tag's band
    top = TAG_BAND + (TILE - TAG_BAND - round(HEIGHT * scale)) // 2
    x, y = round(35 * scale), top + round(32 * scale)  # inside the mask (10..50, 10..40) of sample 1, tile 2
    assert np.abs(image[y, TILE + x] - blended(PALETTE[0])).max() <= 4
    assert np.abs(image[y, x] - GREY).max() <= 4  # sample 0 has no regions
    assert (image[: TAG_BAND - 1, 60:TILE] == (32, 32, 32)).all()  # the band above the picture holds only the tag


def test_zero_samples_and_zero_pairs(tmp_path: Path) -> None:
    export_dataset([make_sample(0, [])], tmp_path, make_info())
    sheet, pairs = contact_sheet(tmp_path, 4)
    assert Image.open(sheet).size == (TILE, TILE) and Image.open(pairs).size == (TILE, TILE)
    export_dataset([], tmp_path, make_info())
    sheet, _ = contact_sheet(tmp_path, 4)
    assert Image.open(sheet).size == (TILE, TILE)


def test_contact_sheet_of_a_dataset_without_regions(tmp_path: Path) -> None:
    stages = {"source": SourceConfig(kind="images", path="seeds")}
    export_dataset([make_sample(0, []), make_sample(1, [])], tmp_path, make_info(), stages=stages)
    sheet, _ = contact_sheet(tmp_path, 2)
    assert Image.open(sheet).size == (2 * TILE, TILE)


def speckled(rng: np.random.Generator, rows: slice, cols: slice, size: tuple[int, int]) -> np.ndarray:
    """A mask of ``size`` (H, W) set at random (70 %) within ``rows`` x ``cols``: its bounding box holds pixels
    outside it too, and masks drawn so overlap in every combination."""
    mask = np.zeros(size, dtype=bool)
    mask[rows, cols] = rng.random(mask[rows, cols].shape) > 0.3
    return mask


def blended_whole(picture: Image.Image, masks: list[np.ndarray], palette: list, alpha: float) -> np.ndarray:
    """The overlay's masks blended the old way, written out apart from draw_overlay's code: the whole image as
    float32, mask by mask in order, rounded to uint8 at the end."""
    pixels = np.asarray(picture.convert("RGB"), dtype=np.float32).copy()
    for i, mask in enumerate(masks):
        colour = np.array(palette[i % len(palette)], dtype=np.float32)
        pixels[mask] = (1 - alpha) * pixels[mask] + alpha * colour
    return pixels.round().astype(np.uint8)


WHOLE = (slice(None), slice(None))


@pytest.mark.parametrize(
    ("shapes", "alpha", "mode", "size"),
    [
        pytest.param([(slice(5, 60), slice(10, 90))], ALPHA, "RGB", (HEIGHT, WIDTH), id="one-blob"),
        pytest.param([WHOLE], ALPHA, "RGB", (HEIGHT, WIDTH), id="whole-image"),
        pytest.param(
            [(slice(0, 3), slice(0, 2)), (slice(-2, None), slice(-5, None))],
            ALPHA,
            "RGB",
            (HEIGHT, WIDTH),
            id="corners",
        ),
        pytest.param(
            [(slice(10, 50), slice(10, 50)), (slice(30, 80), slice(30, 80))],
            ALPHA,
            "RGB",
            (HEIGHT, WIDTH),
            id="overlapping-regions",
        ),
        pytest.param([(slice(0, 0), slice(0, 0))], ALPHA, "RGB", (HEIGHT, WIDTH), id="empty-mask"),
        pytest.param([WHOLE] * 5, ALPHA, "RGB", (HEIGHT, WIDTH), id="five-over-every-pixel"),
        pytest.param([WHOLE] * 15, ALPHA, "RGB", (HEIGHT, WIDTH), id="fifteen-palette-wraps"),
        pytest.param([WHOLE] * 40, ALPHA, "RGB", (37, 53), id="forty-masks-codes-renumbered-often"),
        pytest.param([WHOLE] * 6, 1 / 3, "RGB", (31, 17), id="alpha-third-odd-size"),
        pytest.param([WHOLE] * 4, 0.999, "RGB", (HEIGHT, WIDTH), id="alpha-near-one"),
        pytest.param([WHOLE] * 3, 0.0, "RGB", (HEIGHT, WIDTH), id="alpha-zero"),
        pytest.param([WHOLE] * 3, ALPHA, "L", (HEIGHT, WIDTH), id="grey-image"),
        pytest.param([WHOLE] * 3, ALPHA, "RGBA", (1, 1), id="one-pixel-rgba"),
    ],
)
def test_overlay_equals_the_blend_over_the_whole_image(
    shapes: list[tuple[slice, slice]], alpha: float, mode: str, size: tuple[int, int]
) -> None:
    """Tinting through per-class lookup tables gives, byte for byte, what blending the whole image as float32 mask
    by mask gives: every pixel value, alpha and number of overlapping masks."""
    rng = np.random.default_rng(len(shapes))
    picture = Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).convert(mode)
    masks = [speckled(rng, rows, cols, size) for rows, cols in shapes]
    regions = [{"phrase": "", "box": [-9, -9, -9, -9], "mask": encode_rle(mask)} for mask in masks]  # boxes off-image
    drawn = np.asarray(draw_overlay(picture, regions, alpha=alpha))
    assert np.array_equal(drawn, blended_whole(picture, masks, list(PALETTE), alpha))


@pytest.mark.parametrize(
    ("chosen_share", "rejected_share", "alpha"),
    [(0.5, 0.5, 0.55), (0.9, 0.1, 0.55), (0.0, 0.7, 0.3), (1.0, 1.0, 0.55)],
    ids=["half-and-half", "mostly-chosen", "no-chosen-alpha-0.3", "both-everywhere"],
)
def test_difference_view_equals_the_blend_over_the_whole_image(
    chosen_share: float, rejected_share: float, alpha: float
) -> None:
    rng = np.random.default_rng(7)
    picture = Image.fromarray(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8))
    chosen, rejected = (rng.random((HEIGHT, WIDTH)) < share for share in (chosen_share, rejected_share))
    pair = {"chosen": encode_rle(chosen), "rejected": encode_rle(rejected), "box": [-9, -9, -9, -9]}
    drawn = np.asarray(draw_difference(picture, pair | {"kind": "boundary", "iou": 0.5}, alpha=alpha))
    parts = [chosen & ~rejected, rejected & ~chosen, chosen & rejected]
    expected = blended_whole(picture, parts, [CHOSEN, REJECTED, BOTH], alpha)
    assert np.array_equal(drawn[HEIGHT // 4 :], expected[HEIGHT // 4 :])  # the label sits at the top left


def label_box(out: np.ndarray, rows: slice, colour: tuple[int, int, int]) -> tuple[int, int, int, int]:
    """The (top, left, bottom, right) of the pixels of ``colour`` within ``rows``, asserting that the label's
    margin (its outermost rows and columns) is whole: nothing of it was cut off at an edge."""
    hits = (out[rows] == colour).all(axis=-1)
    ys, xs = np.nonzero(hits)
    top, bottom, left, right = ys.min(), ys.max(), xs.min(), xs.max()
    ring = hits[top : bottom + 1, left : right + 1]
    assert ring[0].all() and ring[-1].all() and ring[:, 0].all() and ring[:, -1].all(), "label cut off"
    assert not ring.all(), "no text inside the label"
    offset = rows.start or 0
    return top + offset, left, bottom + offset, right


@pytest.mark.parametrize(
    ("box", "phrase", "where"),
    [
        ((100, 40, 128, 80), "a long phrase", "above"),
        ((10, 0, 60, 30), "cup", "below"),
        ((0, 60, 20, 90), "one two three four five six seven eight nine ten eleven", "above"),
    ],
    ids=["right-edge-shifted-left", "top-edge-goes-below", "wider-than-image-wrapped"],
)
def test_labels_are_never_cut_off_and_sit_beside_the_box(box: tuple, phrase: str, where: str) -> None:
    x1, y1, x2, y2 = box
    out = pixels(draw_overlay(grey(), [{"phrase": phrase, "box": [float(v) for v in box]}]))
    rows = {"above": slice(0, y1), "below": slice(y2, HEIGHT)}[where]
    top, left, bottom, right = label_box(out, rows, PALETTE[0])
    assert right <= WIDTH - 1 and left >= 0
    if where == "below":
        assert (out[y1 + 3 : y2 - 3, x1 + 3 : x2 - 3] == GREY).all(), "the label hides the box"
    if len(phrase) > 40:
        assert bottom - top > 25, "a label wider than the image is wrapped onto several lines"


def test_difference_view_colours_chosen_only_rejected_only_and_both() -> None:
    chosen, rejected = rect_mask(10, 10, 60, 60), rect_mask(40, 40, 100, 90)
    pair = {"chosen": encode_rle(chosen), "rejected": encode_rle(rejected), "box": [0.0, 0.0, 1.0, 1.0]}
    out = pixels(draw_difference(grey(), pair | {"kind": "boundary", "iou": 0.1}))
    mix = lambda colour: np.round(0.45 * np.array(GREY) + 0.55 * np.array(colour)).astype(int)  # noqa: E731
    assert (out[30, 20] == mix(CHOSEN)).all()  # chosen only
    assert (out[80, 90] == mix(REJECTED)).all()  # rejected only
    assert (out[50, 50] == mix(BOTH)).all()  # both
    assert (out[80, 20] == GREY).all()  # neither
    assert len({CHOSEN, REJECTED, BOTH}) == 3


@pytest.mark.parametrize(("hit", "mark", "other"), [(True, HIT, MISS), (False, MISS, HIT)], ids=["hit", "miss"])
def test_heatmap_rings_the_peak_in_the_hit_colour_and_writes_text_below(hit: bool, mark: tuple, other: tuple) -> None:
    heat = np.zeros((HEIGHT, WIDTH))
    heat[50, 64] = 1.0
    out = pixels(draw_heatmap(grey(), heat, [[20.0, 20.0, 100.0, 80.0]], "a long phrase about the box", hit))
    assert out.shape[0] > HEIGHT, "the phrase goes in a strip under the picture"
    picture = out[:HEIGHT]
    assert (picture[40:60, 54:74] == mark).all(axis=-1).sum() > 10
    assert not (picture == other).all(axis=-1).any()
    assert ((out[HEIGHT:] == mark).all(axis=-1)).sum() > 20  # the HIT / MISS badge
    cold = np.round(0.5 * np.array(GREY) + 0.5 * np.array([0, 0, 127.5])).astype(int)  # jet(0): dark blue
    assert np.abs(picture[30, 30] - cold).max() <= 1  # inside the box: heat only, no text over it


def test_heatmap_sheet_has_a_colour_bar_from_blue_to_red(tmp_path: Path) -> None:
    tile = draw_heatmap(grey(), np.zeros((HEIGHT, WIDTH)), [[20.0, 20.0, 100.0, 80.0]], "cup", True)
    sheet = pixels(Image.open(heatmap_sheet([[(tile, "#0")], [(tile, "#1")]], tmp_path / "s.png")).convert("RGB"))
    assert sheet.shape[:2] == (2 * TILE + COLOUR_BAR, TILE)
    bar = sheet[2 * TILE :]
    row = bar[12]  # through the ramp
    ramp = np.flatnonzero(row.max(axis=-1) - row.min(axis=-1) > 80)  # saturated colours: not the white text
    first, last = row[ramp[0]], row[ramp[-1]]
    assert first[2] > 100 and first[0] < 30, "cold end blue"
    assert last[0] > 100 and last[2] < 30, "hot end red"
