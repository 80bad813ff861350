"""``syngen export OUT --format yolo``: the grounding config as YOLO segmentation labels (Ultralytics layout).

Writes ``<out>/export/yolo/``:

- ``images/<id>.<ext>``: each image's bytes as stored;
- ``labels/<id>.txt``: one line per region, ``<class> x1 y1 x2 y2 ...``: the outline of its mask as a polygon,
  coordinates divided by the image's width and height (the box's corners for a region without a mask);
- ``data.yaml``: ``path`` (the folder, absolute: edit it after moving the folder), ``train`` and ``val`` (both
  ``images``: syngen makes one split) and ``names`` (class id -> phrase, one class per distinct phrase as in the
  COCO export, numbered from 0).

A mask's outline is traced on the pixel edges (contourpy at level 0.5, the corners of a pixel step cut by half a
pixel). A mask in several pieces becomes one polygon that visits each piece and comes back along the same line,
as Ultralytics' own COCO converter does; holes are not kept (YOLO polygons have none).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import contourpy
import numpy as np
import yaml

from syngen.export.files import Categories, image_rows
from syngen.masks import decode_rle
from syngen.owned import replacing


def export_yolo(out: Path) -> Path:
    """Converts ``<out>/dataset`` into ``<out>/export/yolo/`` (replacing an earlier export); returns the folder."""
    target = Path(out) / "export" / "yolo"
    with replacing(target) as folder:
        (folder / "images").mkdir()
        (folder / "labels").mkdir()
        categories = Categories(first=0)
        for row in image_rows(Path(out) / "dataset"):
            (folder / "images" / row.file_name).write_bytes(row.data)
            lines = []
            for region in row.regions:
                points = outline(region)
                if len(points) < 3:
                    continue  # an empty mask
                scaled = points / np.array([row.width, row.height])
                coordinates = " ".join(f"{v:.6f}" for v in np.clip(scaled, 0, 1).ravel())
                lines.append(f"{categories.id(region.get('phrase'))} {coordinates}\n")
            (folder / "labels" / f"{row.id}.txt").write_text("".join(lines), encoding="utf-8")
        names = {i: name for name, i in categories.ids.items()}
        data = {"path": str(target.resolve()), "train": "images", "val": "images", "names": names}
        (folder / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return target


def outline(region: dict[str, Any]) -> np.ndarray:
    """(N, 2) xy pixel coordinates of the polygon of a region: its mask's outer outline(s) joined into one, or its
    box's corners when it has no mask."""
    if region.get("mask") is None:
        x1, y1, x2, y2 = region["box"]
        return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], dtype=np.float64)
    return mask_polygon(decode_rle(region["mask"]))


def mask_polygon(mask: np.ndarray) -> np.ndarray:
    """The outer outlines of a bool mask's pieces as one (N, 2) xy polygon on the pixel edges (empty for an empty
    mask): the largest piece first, each other piece reached from its first point and left along the same line."""
    padded = np.pad(mask.astype(np.float64), 1)  # so pieces on the image border close
    lines = cast(list[np.ndarray], contourpy.contour_generator(z=padded, line_type="Separate").lines(0.5))
    rings = [_corners(line[:-1]) - 0.5 for line in lines if _signed_area(line) > 0]  # positive: not a hole
    if not rings:
        return np.zeros((0, 2))
    rings.sort(key=_signed_area, reverse=True)
    start = rings[0][0]
    path = [rings[0]]
    for ring in rings[1:]:  # out from the start to the piece, around it, and (next or at the end) back
        nearest = int(np.argmin(((ring - start) ** 2).sum(axis=1)))
        ring = np.roll(ring, -nearest, axis=0)
        path += [start[None], ring, ring[:1]]
    return np.concatenate(path)


def _corners(ring: np.ndarray) -> np.ndarray:
    """The points of a closed ring where its direction changes (contourpy puts one on every pixel edge)."""
    ahead, behind = np.roll(ring, -1, axis=0) - ring, ring - np.roll(ring, 1, axis=0)
    turning = np.abs(ahead[:, 0] * behind[:, 1] - ahead[:, 1] * behind[:, 0]) > 1e-9
    return ring[turning]


def _signed_area(points: np.ndarray) -> float:
    """The shoelace area of a ring of xy points (closed or not): positive for the outline contourpy traces around
    a region above the level, negative for the outline of a hole in it."""
    x, y = points[:, 0], points[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))
