"""Overlays and contact sheets: what `syngen inspect` draws and what the export's ``overlay`` column shows.

:func:`draw_overlay` draws regions: masks filled in colour, boxes outlined, phrases written beside the boxes and
never cut off. :func:`draw_difference` compares a preference pair's masks in three colours. :func:`contact_sheet`
reads an exported dataset and writes ``<out>/inspect/contact_sheet.png`` (grounding samples) and
``preference.png`` (pairs). :func:`draw_heatmap` and :func:`heatmap_sheet` draw Grad-CAM heat maps for
``syngen eval pointing --heatmaps``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from syngen.masks import decode_rle
from syngen.stats import read_rows

RGB = tuple[int, int, int]
PAIR_COLUMNS = ["id", "image_id", "prompt", "box", "chosen", "rejected", "kind", "iou"]

# Distinct colours (Sasha Trubetskoy's list), region i gets PALETTE[i % len(PALETTE)].
PALETTE: tuple[RGB, ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (220, 190, 255),
)
CHOSEN: RGB = (60, 180, 75)
REJECTED: RGB = (230, 25, 75)
BOTH: RGB = (0, 130, 200)  # the difference view: pixels in both masks
HIT: RGB = (0, 150, 60)
MISS: RGB = (210, 30, 30)
WHITE: RGB = (255, 255, 255)
TILE = 256
COLOUR_BAR = 40  # height of the heat map sheet's colour bar
TAG_BAND = 16  # height of a tile's band with its tag
_BACKGROUND: RGB = (32, 32, 32)
_CODES = 1 << 16  # most pixel codes _tint() counts at once (see _classes)


def draw_overlay(
    image: Image.Image,
    regions: Sequence[Mapping[str, Any]],
    palette: Sequence[RGB] = PALETTE,
    alpha: float = 0.45,
    decode: Callable[[Any], np.ndarray] = decode_rle,
) -> Image.Image:
    """``image`` with each region drawn in its colour: ``mask`` (RLE, optional) blended in at ``alpha`` (see
    :func:`_tint`), ``box`` (xyxy pixels) outlined, ``phrase`` (optional) written beside the box (see :func:`_label`).
    Region i gets ``palette[i % len(palette)]``. Masks must have the image's size (they are decoded at it, so they
    line up pixel for pixel); ``decode`` turns an RLE into its bool mask (the export passes one that keeps it)."""
    pixels = _rgb_pixels(image)
    masks = []
    for i, region in enumerate(regions):
        if region.get("mask") is not None:
            masks.append((_mask_at(decode(region["mask"]), pixels), palette[i % len(palette)]))
    out = Image.fromarray(_tint(pixels, masks, alpha))
    draw = ImageDraw.Draw(out)
    line = max(1, round(min(out.size) / 160))
    font = _font(max(10, round(min(out.size) / 24)))
    for i, region in enumerate(regions):
        colour = palette[i % len(palette)]
        x1, y1, x2, y2 = region["box"]
        draw.rectangle([x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)], outline=colour, width=line)
        _label(draw, region.get("phrase", ""), (x1, y1, x2, y2), colour, font)
    return out


def _tint(pixels: np.ndarray, masks: Sequence[tuple[np.ndarray, RGB]], alpha: float) -> np.ndarray:
    """``pixels`` ((H, W, 3) uint8) with each (H, W) bool mask of ``masks`` blended in its colour, in order: every
    pixel under a mask becomes ``(1 - alpha) * pixel + alpha * colour`` in float32, the result rounded to uint8 at
    the end. The same values as blending the whole image as float32 mask by mask, computed differently: pixels
    covered by the same masks form a class, each class gets a table of what each of the 256 values of a channel
    becomes (the same float32 operations on ``arange(256)``), and each pixel is looked up in its class's table."""
    if not masks:
        return pixels.copy()
    height, width = pixels.shape[:2]
    classes, labels = _classes([mask for mask, _ in masks], height, width)
    tables = np.empty((len(classes), 3, 256), np.uint8)
    for label, members in enumerate(classes):
        values = np.repeat(np.arange(256, dtype=np.float32)[None], 3, axis=0)  # channel by channel
        for k in members:
            values[...] = (1 - alpha) * values + alpha * np.array(masks[k][1], dtype=np.float32)[:, None]
        tables[label] = values.round().astype(np.uint8)
    out = np.empty_like(pixels)
    first = labels * (3 * 256)  # where each pixel's class's table starts in the flat tables
    for channel in range(3):
        index = first + pixels[..., channel]
        index += channel * 256
        np.take(tables.ravel(), index, out=out[..., channel])
    return out


def _classes(masks: Sequence[np.ndarray], height: int, width: int) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """The classes of pixels that the same ``masks`` cover (each as the indices of its masks) and each pixel's
    class, an (H, W) array of indices into the classes. A pixel's code gains a bit per mask; the codes are
    renumbered to the classes found whenever more bits would make too many codes."""
    classes: list[tuple[int, ...]] = [()]
    labels = np.zeros((height, width), np.intp)
    pending: list[int] = []  # the masks whose bits the codes hold (the last one in the lowest bit)
    for k, mask in enumerate(masks):
        labels <<= 1
        labels |= mask
        pending.append(k)
        if k == len(masks) - 1 or len(classes) << (len(pending) + 1) > _CODES:
            bits = len(pending)
            found = np.flatnonzero(np.bincount(labels.ravel(), minlength=len(classes) << bits))
            renumber = np.zeros(len(classes) << bits, np.intp)
            renumber[found] = np.arange(len(found))
            classes = [
                classes[code >> bits] + tuple(m for b, m in enumerate(pending) if code >> (bits - 1 - b) & 1)
                for code in found.tolist()
            ]
            labels = renumber[labels]
            pending = []
    return classes, labels


def _rgb_pixels(image: Image.Image) -> np.ndarray:
    """The (H, W, 3) uint8 pixels of ``image`` as RGB (an RGB image is read as it is, not converted to a copy
    first)."""
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def _mask_at(mask: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """``mask``, checked to have the size of the (H, W, 3) ``pixels`` (ValueError if not)."""
    if mask.shape != pixels.shape[:2]:
        raise ValueError(f"mask of size {list(mask.shape)} on an image of size {list(pixels.shape[:2])}")
    return mask


def contact_sheet(out_dir: Path, n: int = 16) -> tuple[Path, Path]:
    """Reads the first ``n`` grounding rows and ``n`` preference pairs of ``<out_dir>/dataset`` and writes
    ``<out_dir>/inspect/contact_sheet.png`` (overlays) and ``preference.png`` (difference views). Returns both."""
    dataset_dir = Path(out_dir) / "dataset"
    folder = Path(out_dir) / "inspect"
    folder.mkdir(parents=True, exist_ok=True)

    samples = read_rows(dataset_dir, "grounding", ["id", "image", "regions"], limit=n)
    tiles = [
        _tile(draw_overlay(decode_image(row["image"]), row["regions"] or []), f"#{i}") for i, row in enumerate(samples)
    ]
    sheet = folder / "contact_sheet.png"
    _grid(tiles, math.ceil(math.sqrt(len(tiles))), "no samples").save(sheet)

    pairs = list(read_rows(dataset_dir, "preference", PAIR_COLUMNS, limit=n))
    images = pair_images(dataset_dir, {row["image_id"] for row in pairs})
    pair_tiles = [_tile(draw_difference(images[row["image_id"]], row), f"#{i}") for i, row in enumerate(pairs)]
    preference = folder / "preference.png"
    _grid(pair_tiles, math.ceil(math.sqrt(len(pair_tiles))), "no pairs").save(preference)
    return sheet, preference


def draw_difference(image: Image.Image, pair: Mapping[str, Any], alpha: float = 0.55) -> Image.Image:
    """``image`` with a preference pair's masks compared (both RLE at the image's size): pixels only in ``chosen``
    tinted CHOSEN, only in ``rejected`` REJECTED, in both BOTH; its ``box`` outlined in white and labelled with
    its ``kind`` and ``iou``."""
    pixels = _rgb_pixels(image)
    chosen, rejected = (_mask_at(decode_rle(pair[key]), pixels) for key in ("chosen", "rejected"))
    parts = [(chosen & ~rejected, CHOSEN), (rejected & ~chosen, REJECTED), (chosen & rejected, BOTH)]
    out = Image.fromarray(_tint(pixels, parts, alpha))
    label = f"{pair['kind']} IoU {pair['iou']:.2f}"
    return draw_overlay(out, [{"box": pair["box"], "phrase": label}], [WHITE])


def draw_heatmap(
    image: Image.Image, heat: np.ndarray, boxes: Sequence[Sequence[float]], phrase: str, hit: bool, alpha: float = 0.5
) -> Image.Image:
    """``image`` with ``heat`` ((H, W) in [0, 1], at the image's size) blended in as a blue-to-red ramp, each of
    ``boxes`` outlined in white, the heat map's first argmax ringed in green (a ``hit``) or red (a miss), and
    below the picture a strip saying HIT or MISS and ``phrase`` (so no text covers a box)."""
    if heat.shape != (image.height, image.width):
        raise ValueError(f"heat map of size {list(heat.shape)} on an image of size {[image.height, image.width]}")
    pixels = (1 - alpha) * np.asarray(image.convert("RGB"), dtype=np.float32) + alpha * _jet(heat)
    out = draw_overlay(Image.fromarray(pixels.round().astype(np.uint8)), [{"box": box} for box in boxes], [WHITE])
    y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
    r = max(3, round(min(out.size) / 30))
    mark = HIT if hit else MISS
    draw = ImageDraw.Draw(out)
    draw.ellipse([x - r - 1, y - r - 1, x + r + 1, y + r + 1], outline=(0, 0, 0), width=max(1, r // 2) + 2)
    draw.ellipse([x - r, y - r, x + r, y + r], outline=mark, width=max(1, r // 2))
    return _with_caption(out, "HIT" if hit else "MISS", mark, phrase)


def heatmap_sheet(rows: Sequence[Sequence[tuple[Image.Image, str]]], path: Path) -> Path:
    """Writes a PNG of ``rows`` (each a list of (drawn image, tag) columns, e.g. baseline then trained) as tiles
    in a grid, with a colour bar of the heat scale under it; returns ``path``."""
    columns = max((len(row) for row in rows), default=1)
    tiles = [_tile(image, tag) for row in rows for image, tag in row]
    grid = _grid(tiles, columns, "no regions")
    bar = _colour_bar(grid.width)
    sheet = Image.new("RGB", (grid.width, grid.height + bar.height), _BACKGROUND)
    sheet.paste(grid, (0, 0))
    sheet.paste(bar, (0, grid.height))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return Path(path)


def _jet(heat: np.ndarray) -> np.ndarray:
    """(H, W) values in [0, 1] as (H, W, 3) float RGB on the jet ramp: blue, cyan, yellow, red."""
    h = np.clip(heat, 0, 1)[..., None] * 4
    return np.clip(1.5 - np.abs(h - np.array([3.0, 2.0, 1.0])), 0, 1) * 255


def _colour_bar(width: int, height: int = COLOUR_BAR) -> Image.Image:
    """A strip ``width`` wide: the heat ramp from 0 to 1 with its ends labelled, and what the ring's colours mean."""
    strip = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(strip)
    font = _font(12)
    ramp_w = max(32, min(width // 2, 320))
    ramp = _jet(np.tile(np.linspace(0, 1, ramp_w), (12, 1))).astype(np.uint8)
    strip.paste(Image.fromarray(ramp), (30, 6))
    draw.text((4, 4), "heat", fill=WHITE, font=font)
    draw.text((30, 20), "0", fill=WHITE, font=font)
    draw.text((30 + ramp_w - 8, 20), "1", fill=WHITE, font=font)
    draw.text((40 + ramp_w, 4), "ring: argmax", fill=WHITE, font=font)
    draw.text((40 + ramp_w, 20), "hit", fill=HIT, font=font)
    draw.text((70 + ramp_w, 20), "miss", fill=MISS, font=font)
    return strip


def _with_caption(image: Image.Image, badge: str, colour: RGB, text: str) -> Image.Image:
    """``image`` with a strip under it: ``badge`` on a box of ``colour``, then ``text``, wrapped to the image's
    width."""
    size = max(10, round(image.width / 20))
    font = _font(size)
    probe = ImageDraw.Draw(image)
    lines = _wrap(probe, f"{badge} {text}", font, image.width - 8)
    left, top, _, bottom = probe.multiline_textbbox((0, 0), lines, font=font)
    out = Image.new("RGB", (image.width, image.height + int(bottom - top) + 8), _BACKGROUND)
    out.paste(image, (0, 0))
    draw = ImageDraw.Draw(out)
    x, y = 4, image.height + 4
    draw.rectangle([x - 2, y - 2, x + draw.textlength(badge, font=font) + 2, y + size + 2], fill=colour)
    draw.multiline_text((x - left, y - top), lines, fill=WHITE, font=font)
    return out


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except ImportError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _label(draw: ImageDraw.ImageDraw, text: str, box: Sequence[float], colour: RGB, font: Any, margin: int = 2) -> None:
    """``text`` on a box of ``colour`` beside the xyxy ``box``, wholly inside the image: above the box where there
    is room, else below it, else inside its top edge; shifted left at the right edge, and wrapped onto several lines
    when it is wider than the image (so no label is ever cut off)."""
    if not text:
        return
    width_limit = draw.im.size[0] - 2 * margin
    lines = _wrap(draw, text, font, width_limit)
    left, top, right, bottom = draw.multiline_textbbox((0, 0), lines, font=font)
    width, height = right - left + 2 * margin, bottom - top + 2 * margin
    image_w, image_h = draw.im.size
    x1, y1, _, y2 = box
    if y1 >= height:
        y = y1 - height
    elif y2 + height <= image_h:
        y = y2
    else:
        y = max(0, y1)
    x = min(max(0.0, x1), max(0.0, image_w - width))
    y = min(y, max(0.0, image_h - height))
    draw.rectangle([x, y, x + width - 1, y + height - 1], fill=colour)
    ink = (0, 0, 0) if sum(colour) > 380 else (255, 255, 255)
    draw.multiline_text((x + margin - left, y + margin - top), lines, fill=ink, font=font)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Any, width: float) -> str:
    """``text`` with line breaks between words so that each line fits ``width`` pixels (a word longer than that is
    cut into pieces that fit)."""
    lines: list[str] = []
    for word in text.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] += f" {word}"
            continue
        while len(word) > 1 and draw.textlength(word, font=font) > width:  # a word wider than the image: cut it
            cut = next(
                i for i in range(len(word) - 1, 0, -1) if draw.textlength(word[:i], font=font) <= width or i == 1
            )
            lines.append(word[:cut])
            word = word[cut:]
        lines.append(word)
    return "\n".join(lines)


def decode_image(image: dict[str, Any]) -> Image.Image:
    """A parquet Image cell ({"bytes", "path"}) as an RGB PIL image."""
    return Image.open(io.BytesIO(image["bytes"])).convert("RGB")


def _tile(image: Image.Image, tag: str) -> Image.Image:
    """``image`` scaled to fit a TILE x TILE square under a band holding ``tag`` (so the tag covers none of the
    picture), centred on a dark background."""
    thumb = ImageOps.contain(image, (TILE, TILE - TAG_BAND))
    tile = Image.new("RGB", (TILE, TILE), _BACKGROUND)
    tile.paste(thumb, ((TILE - thumb.width) // 2, TAG_BAND + (TILE - TAG_BAND - thumb.height) // 2))
    ImageDraw.Draw(tile).text((3, 2), tag, fill=WHITE, font=_font(12))
    return tile


def pair_images(dataset_dir: Path, ids: set[str]) -> dict[str, Image.Image]:
    """The grounding images of ``ids`` (where preference pairs refer to them), reading until all are found."""
    found: dict[str, Image.Image] = {}
    for row in read_rows(dataset_dir, "grounding", ["id", "image"]) if ids else ():
        if row["id"] in ids:
            found[row["id"]] = decode_image(row["image"])
            if len(found) == len(ids):
                break
    return found


def _grid(tiles: Sequence[Image.Image], columns: int, empty: str) -> Image.Image:
    """Tiles in rows of ``columns``; one tile saying ``empty`` when there are none."""
    if not tiles:
        sheet = Image.new("RGB", (TILE, TILE), _BACKGROUND)
        ImageDraw.Draw(sheet).text((8, TILE // 2), empty, fill=(255, 255, 255), font=_font(16))
        return sheet
    rows = math.ceil(len(tiles) / columns)
    sheet = Image.new("RGB", (columns * TILE, rows * TILE), _BACKGROUND)
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % columns) * TILE, (i // columns) * TILE))
    return sheet
