"""Overlays and contact sheets: what `syngen inspect` writes and what the export's ``overlay`` column shows.

:func:`draw_overlay` is the one drawing function: masks filled in colour, boxes outlined, phrases written.
:func:`contact_sheet` reads an exported dataset and writes ``<out>/inspect/contact_sheet.png`` (grounding
samples), ``preference.png`` (chosen and rejected masks side by side) and ``index.html`` (both, with text).
:func:`draw_heatmap` and :func:`heatmap_sheet` draw Grad-CAM heat maps for ``syngen eval pointing --heatmaps``.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from syngen.masks import decode_rle
from syngen.stats import read_rows

RGB = tuple[int, int, int]

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
TILE = 256
_BACKGROUND: RGB = (32, 32, 32)


def draw_overlay(
    image: Image.Image, regions: Sequence[Mapping[str, Any]], palette: Sequence[RGB] = PALETTE, alpha: float = 0.45
) -> Image.Image:
    """``image`` with each region drawn in its colour: ``mask`` (RLE, optional) blended in at ``alpha``, ``box``
    (xyxy pixels) outlined, ``phrase`` written above the box. Region i gets ``palette[i % len(palette)]``.
    Masks must have the image's size (they are decoded at it, so they line up pixel for pixel)."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32).copy()
    for i, region in enumerate(regions):
        if region.get("mask") is None:
            continue
        mask = decode_rle(region["mask"])
        if mask.shape != pixels.shape[:2]:
            raise ValueError(f"mask of size {list(mask.shape)} on an image of size {list(pixels.shape[:2])}")
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        if not len(rows):
            continue
        # blended within the mask's bounding box only (the same values as over the whole image, in half the time)
        window = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        blended = (1 - alpha) * pixels[window] + alpha * np.array(palette[i % len(palette)], dtype=np.float32)
        np.copyto(pixels[window], blended, where=mask[window][..., None])
    out = Image.fromarray(pixels.round().astype(np.uint8))
    draw = ImageDraw.Draw(out)
    line = max(1, round(min(out.size) / 160))
    font = _font(max(10, round(min(out.size) / 24)))
    for i, region in enumerate(regions):
        colour = palette[i % len(palette)]
        x1, y1, x2, y2 = region["box"]
        draw.rectangle([x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)], outline=colour, width=line)
        _label(draw, region.get("phrase", ""), (x1, y1), colour, font)
    return out


def contact_sheet(out_dir: Path, n: int = 16) -> tuple[Path, Path]:
    """Reads the first ``n`` grounding rows and ``n`` preference pairs of ``<out_dir>/dataset`` and writes
    ``<out_dir>/inspect/contact_sheet.png``, ``preference.png`` and ``index.html``. Returns (sheet, html)."""
    dataset_dir = Path(out_dir) / "dataset"
    folder = Path(out_dir) / "inspect"
    folder.mkdir(parents=True, exist_ok=True)

    samples = list(read_rows(dataset_dir, "grounding", ["id", "image", "caption", "phrases", "regions"], limit=n))
    tiles = [_tile(draw_overlay(_decode(row["image"]), row["regions"] or []), f"#{i}") for i, row in enumerate(samples)]
    sheet = folder / "contact_sheet.png"
    _grid(tiles, math.ceil(math.sqrt(len(tiles))), "no samples").save(sheet)

    pair_columns = ["id", "image_id", "prompt", "box", "chosen", "rejected", "kind", "iou"]
    pairs = list(read_rows(dataset_dir, "preference", pair_columns, limit=n))
    images = _images(dataset_dir, {row["image_id"] for row in pairs})
    pair_tiles = [_pair_tiles(row, images[row["image_id"]], i) for i, row in enumerate(pairs)]
    _grid([t for both in pair_tiles for t in both], 2 * math.ceil(math.sqrt(len(pairs) / 2)), "no pairs").save(
        folder / "preference.png"
    )

    page = folder / "index.html"
    page.write_text(_html(samples, tiles, pairs, pair_tiles), encoding="utf-8")
    return sheet, page


def draw_heatmap(
    image: Image.Image, heat: np.ndarray, boxes: Sequence[Sequence[float]], phrase: str, alpha: float = 0.5
) -> Image.Image:
    """``image`` with ``heat`` ((H, W) in [0, 1], at the image's size) blended in as a blue-to-red ramp, each of
    ``boxes`` outlined (the first labelled with ``phrase``) and the heat map's first argmax ringed."""
    if heat.shape != (image.height, image.width):
        raise ValueError(f"heat map of size {list(heat.shape)} on an image of size {[image.height, image.width]}")
    h = np.clip(heat, 0, 1)[..., None] * 4
    ramp = np.clip(1.5 - np.abs(h - np.array([3.0, 2.0, 1.0])), 0, 1) * 255  # jet: blue, cyan, yellow, red
    pixels = (1 - alpha) * np.asarray(image.convert("RGB"), dtype=np.float32) + alpha * ramp
    regions = [{"box": box, "phrase": phrase if i == 0 else ""} for i, box in enumerate(boxes)]
    out = draw_overlay(Image.fromarray(pixels.round().astype(np.uint8)), regions, [(255, 255, 255)])
    y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
    r = max(2, round(min(out.size) / 40))
    ImageDraw.Draw(out).ellipse([x - r, y - r, x + r, y + r], outline=(255, 255, 255), width=max(1, r // 2))
    return out


def heatmap_sheet(rows: Sequence[Sequence[tuple[Image.Image, str]]], path: Path) -> Path:
    """Writes a PNG of ``rows`` (each a list of (drawn image, tag) columns, e.g. baseline then trained) as tiles
    in a grid; returns ``path``."""
    columns = max((len(row) for row in rows), default=1)
    tiles = [_tile(image, tag) for row in rows for image, tag in row]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    _grid(tiles, columns, "no regions").save(path)
    return Path(path)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except ImportError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _label(draw: ImageDraw.ImageDraw, text: str, at: tuple[float, float], colour: RGB, font: Any) -> None:
    """``text`` on a box of ``colour`` just above ``at`` (inside the image when there is no room above)."""
    if not text:
        return
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    width, height = right - left + 4, bottom - top + 4
    x, y = at[0], at[1] - height if at[1] >= height else at[1]
    draw.rectangle([x, y, x + width, y + height], fill=colour)
    ink = (0, 0, 0) if sum(colour) > 380 else (255, 255, 255)
    draw.text((x + 2 - left, y + 2 - top), text, fill=ink, font=font)


def _decode(image: dict[str, Any]) -> Image.Image:
    """A parquet Image cell ({"bytes", "path"}) as an RGB PIL image."""
    return Image.open(io.BytesIO(image["bytes"])).convert("RGB")


def _tile(image: Image.Image, tag: str) -> Image.Image:
    """``image`` scaled to fit a TILE x TILE square, centred on a dark background, ``tag`` in the corner."""
    thumb = ImageOps.contain(image, (TILE, TILE))
    tile = Image.new("RGB", (TILE, TILE), _BACKGROUND)
    tile.paste(thumb, ((TILE - thumb.width) // 2, (TILE - thumb.height) // 2))
    ImageDraw.Draw(tile).text((3, 3), tag, fill=(255, 255, 255), font=_font(12))
    return tile


def _images(dataset_dir: Path, ids: set[str]) -> dict[str, Image.Image]:
    """The grounding images of ``ids`` (where preference pairs refer to them), reading until all are found."""
    found: dict[str, Image.Image] = {}
    for row in read_rows(dataset_dir, "grounding", ["id", "image"]) if ids else ():
        if row["id"] in ids:
            found[row["id"]] = _decode(row["image"])
            if len(found) == len(ids):
                break
    return found


def _pair_tiles(row: dict[str, Any], image: Image.Image, index: int) -> tuple[Image.Image, Image.Image]:
    chosen = draw_overlay(image, [{"phrase": row["prompt"], "box": row["box"], "mask": row["chosen"]}], [CHOSEN])
    label = f"{row['kind']} IoU {row['iou']:.2f}"
    rejected = draw_overlay(image, [{"phrase": label, "box": row["box"], "mask": row["rejected"]}], [REJECTED])
    return _tile(chosen, f"#{index} chosen"), _tile(rejected, f"#{index} rejected")


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


def _data_uri(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _html(
    samples: list[dict[str, Any]],
    tiles: list[Image.Image],
    pairs: list[dict[str, Any]],
    pair_tiles: list[tuple[Image.Image, Image.Image]],
) -> str:
    """A self-contained page: thumbnails embedded as data URIs, caption, phrases and pair details as text."""
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>syngen inspect</title><style>"
        "body{font-family:sans-serif;margin:1em}figure{display:inline-block;vertical-align:top;width:260px;"
        "margin:6px}figcaption{font-size:12px}code{font-size:11px}</style></head><body>",
        f"<h1>Grounding samples ({len(samples)})</h1><p><a href='contact_sheet.png'>contact_sheet.png</a></p>",
    ]
    for i, (row, tile) in enumerate(zip(samples, tiles, strict=True)):
        phrases = ", ".join(esc(p) for p in row["phrases"] or [])
        parts.append(
            f"<figure><img src='{_data_uri(tile)}' alt='sample {i}'><figcaption>#{i} <code>{esc(row['id'])}</code>"
            f"<br>{esc(row['caption'] or '')}<br><b>phrases:</b> {phrases}</figcaption></figure>"
        )
    parts.append(f"<h1>Preference pairs ({len(pairs)})</h1><p><a href='preference.png'>preference.png</a></p>")
    for i, (row, (chosen, rejected)) in enumerate(zip(pairs, pair_tiles, strict=True)):
        parts.append(
            f"<figure><img src='{_data_uri(chosen)}' alt='pair {i} chosen'><figcaption>#{i} chosen: "
            f"{esc(row['prompt'])}</figcaption></figure><figure><img src='{_data_uri(rejected)}' "
            f"alt='pair {i} rejected'><figcaption>#{i} rejected: {esc(row['kind'])}, IoU {row['iou']:.3f}"
            f"<br><code>{esc(row['id'])}</code></figcaption></figure><br>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)
