"""Each published layout is recognised from its files or columns, or named with --format; anything else fails
with one paragraph naming the layouts and the columns found (exit 2)."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest
from typer.testing import CliRunner

from syngen.cli import app
from syngen.devtools.layouts import gref, grefcoco, lmms_refcoco, picture, polygon, refcoco_m
from syngen.devtools.shapes import make_shapes_dataset
from syngen.errors import DatasetError
from syngen.eval.sets import FORMATS, open_evalset

BOX = (0, 0, 4, 4)


def build(kind: str, root: Path) -> Path:
    if kind == "refcoco":
        return lmms_refcoco(root, {"val": [(1, BOX, ["a"])]})
    if kind == "refcoco-m":
        return refcoco_m(root, [(1, [(BOX, ["a"])])])
    if kind == "grefcoco":
        ann = {"id": 1, "segmentation": [polygon(BOX)], "bbox": [0, 0, 4, 4], "area": 16, "iscrowd": 0}
        return grefcoco(root, [ann], [gref(1, "val", [1], "a")])
    if kind == "syngen":
        return make_shapes_dataset(root, images=1, kinds=())
    root.mkdir()
    rows = {"image": [picture(0)], "sentences": [["a"]], "segmentation": [[polygon(BOX)]]}
    datasets.Dataset.from_dict(rows).cast_column("image", datasets.Image()).to_parquet(str(root / "refs.parquet"))
    return root


@pytest.mark.parametrize("kind", list(FORMATS))
def test_layout_is_detected_and_can_be_named(kind: str, tmp_path: Path) -> None:
    data = str(build(kind, tmp_path / kind))
    assert open_evalset(data).name == kind
    assert open_evalset(data, kind).name == kind


def test_a_layout_named_that_does_not_fit_says_so(tmp_path: Path) -> None:
    data = str(build("refcoco-m", tmp_path / "m"))
    with pytest.raises(DatasetError, match="is not in the refcoco layout: its columns are file_name, image, image_id"):
        open_evalset(data, "refcoco")
    with pytest.raises(DatasetError, match="--format 'coco' is not a known layout"):
        open_evalset(data, "coco")


def test_an_unknown_layout_fails_with_one_paragraph(tmp_path: Path) -> None:
    root = tmp_path / "other"
    root.mkdir()
    rows = {"picture": [picture(0)], "caption": ["a"]}
    datasets.Dataset.from_dict(rows).cast_column("picture", datasets.Image()).to_parquet(str(root / "x.parquet"))
    result = CliRunner().invoke(app, ["eval", "ris", "--model", str(tmp_path), "--data", str(root)])
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert "matches no known layout: its columns are caption, picture." in message
    for kind in FORMATS:
        assert f"{kind}:" in message, kind
    assert "Traceback" not in result.output
