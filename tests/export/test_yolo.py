"""YOLO export: a reader written here (Ultralytics' layout and line format, polygons filled by pixel centre)
gets each region's mask back from the labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from matplotlib.path import Path as Polygon
from PIL import Image
from scipy.ndimage import binary_fill_holes

from syngen.export.yolo import export_yolo, mask_polygon
from syngen.masks import decode_rle
from syngen.owned import MARKER
from syngen.stats import read_rows
from tests.export.formats import SHAPES, make_dataset, shape
from tests.export.test_export import HEIGHT, WIDTH


def fill(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """The (height, width) pixels whose centres lie inside the polygon of xy ``points`` (pixel units)."""
    ys, xs = np.mgrid[0:height, 0:width]
    centres = np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], axis=1)
    return Polygon(points).contains_points(centres).reshape(height, width)


def read_yolo(folder: Path) -> dict[str, list[tuple[str, np.ndarray]]]:
    """{image stem: [(class name, mask)]} from an Ultralytics segmentation folder: data.yaml's names, one
    ``labels/<stem>.txt`` per ``images/<stem>.<ext>``, each line ``class x y x y ...`` normalised to [0, 1]."""
    data = yaml.safe_load((folder / "data.yaml").read_text())
    assert Path(data["path"]) == folder.resolve() and data["train"] == data["val"] == "images"
    found = {}
    for image_file in sorted((folder / data["train"]).iterdir()):
        width, height = Image.open(image_file).size
        objects = []
        for line in (folder / "labels" / f"{image_file.stem}.txt").read_text().splitlines():
            cls, *coords = line.split()
            values = np.array(coords, dtype=float)
            assert len(values) % 2 == 0 and len(values) >= 6 and (values >= 0).all() and (values <= 1).all()
            points = values.reshape(-1, 2) * [width, height]
            objects.append((data["names"][int(cls)], fill(points, width, height)))
        found[image_file.stem] = objects
    return found


@pytest.mark.parametrize("name", SHAPES)
def test_mask_polygon_fills_back_to_the_mask(name: str) -> None:
    """Filled by pixel centre, the polygon is the mask (with its holes filled: YOLO polygons have none); a mask in
    pieces is one polygon whose zero-width bridges may touch a few pixel centres."""
    mask = shape(name)
    filled = fill(mask_polygon(mask), WIDTH, HEIGHT)
    expected = binary_fill_holes(mask)
    assert expected.sum() > mask.sum() if name == "ring" else np.array_equal(expected, mask)
    if name == "two-pieces":
        assert (filled >= expected).all() and (filled & ~expected).sum() <= 3
    else:
        assert np.array_equal(filled, expected)


def test_mask_polygon_keeps_only_the_corners() -> None:
    """The rectangle of pixels 20..59 x 10..39 has its edges at x = 20 and 60, y = 10 and 40: each corner is cut
    by half a pixel, and no point lies between corners."""
    points = {tuple(p) for p in mask_polygon(shape("rectangle")).tolist()}
    corners = {(20, 10.5), (20.5, 10), (59.5, 10), (60, 10.5), (60, 39.5), (59.5, 40), (20.5, 40), (20, 39.5)}
    assert points == corners


def test_empty_mask_has_no_polygon() -> None:
    assert mask_polygon(np.zeros((5, 5), bool)).shape == (0, 2)


def test_labels_read_back_as_the_dataset_masks(tmp_path: Path) -> None:
    out = make_dataset(tmp_path)
    folder = export_yolo(out)
    assert folder == out / "export/yolo" and (folder / MARKER).is_file()
    found = read_yolo(folder)
    rows = list(read_rows(out / "dataset", "grounding", ["id", "regions"]))
    assert sorted(found) == sorted(row["id"] for row in rows)
    for row in rows:
        objects = found[row["id"]]
        assert len(objects) == len(row["regions"])
        for (name, drawn), region in zip(objects, row["regions"], strict=True):
            assert name == " ".join(region["phrase"].lower().split())
            if region["mask"] is None:
                x1, y1, x2, y2 = (round(v) for v in region["box"])
                assert drawn.sum() == (x2 - x1) * (y2 - y1) and drawn[y1:y2, x1:x2].all()
            else:
                expected = binary_fill_holes(decode_rle(region["mask"]))
                assert (drawn >= expected).all() and (drawn & ~expected).sum() <= 3


def test_a_rerun_replaces_the_folder(tmp_path: Path) -> None:
    out = make_dataset(tmp_path)
    (export_yolo(out) / "labels" / "stray.txt").write_text("0 0 0 1 0 1 1")
    assert not (export_yolo(out) / "labels" / "stray.txt").exists()
