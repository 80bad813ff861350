"""COCO export: pycocotools loads it and its masks equal the dataset's; refs map phrases to annotations; the folder
is syngen's own, replaced on a rerun, and a failed export keeps the previous one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from typer.testing import CliRunner

from syngen.cli import app
from syngen.errors import UsageError
from syngen.export.coco import export_coco
from syngen.masks import decode_rle
from syngen.owned import MARKER
from syngen.stats import read_rows
from tests.export.formats import make_dataset


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = make_dataset(tmp_path_factory.mktemp("out"))
    export_coco(out)
    return out


def dataset_rows(out: Path) -> list[dict]:
    return list(read_rows(out / "dataset", "grounding", ["id", "image", "regions"]))


def test_pycocotools_masks_equal_the_dataset_masks(out: Path) -> None:
    coco = COCO(str(out / "export/coco/instances.json"))
    rows = dataset_rows(out)
    assert len(coco.imgs) == 3 and len(coco.anns) == 6
    for image_id, row in zip(sorted(coco.imgs), rows, strict=True):
        image = coco.imgs[image_id]
        assert image["syngen_id"] == row["id"]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        assert len(anns) == len(row["regions"])
        for ann, region in zip(anns, row["regions"], strict=True):
            x1, y1, x2, y2 = region["box"]
            assert ann["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1])
            assert coco.cats[ann["category_id"]]["name"] == " ".join(region["phrase"].lower().split())
            drawn = coco.annToMask(ann).astype(bool)
            if region["mask"] is None:  # the box as a polygon
                expected = np.zeros_like(drawn)
                expected[round(y1) : round(y2), round(x1) : round(x2)] = True
                assert np.array_equal(drawn, expected)
            else:
                assert np.array_equal(drawn, decode_rle(region["mask"]))
                assert ann["area"] == decode_rle(region["mask"]).sum()


def test_one_category_per_phrase_case_and_spaces_folded(out: Path) -> None:
    coco = COCO(str(out / "export/coco/instances.json"))
    names = sorted(c["name"] for c in coco.cats.values())
    assert names == ["a ring", "corner", "pole", "red box", "the l"]  # "Red  box" and "red box" are one
    assert len({c["id"] for c in coco.cats.values()}) == 5


def test_images_are_the_dataset_bytes(out: Path) -> None:
    coco = COCO(str(out / "export/coco/instances.json"))
    for image_id, row in zip(sorted(coco.imgs), dataset_rows(out), strict=True):
        file = out / "export/coco/images" / coco.imgs[image_id]["file_name"]
        assert file.read_bytes() == row["image"]["bytes"]
    assert sorted(p.suffix for p in (out / "export/coco/images").iterdir()) == [".jpg", ".png", ".png"]


def test_refs_map_each_phrase_to_its_annotation(out: Path) -> None:
    coco = COCO(str(out / "export/coco/instances.json"))
    refs = json.loads((out / "export/coco/refs.json").read_text())
    assert len(refs) == len(coco.anns)
    phrases = [r["phrase"] for row in dataset_rows(out) for r in row["regions"]]
    for ref, phrase in zip(refs, phrases, strict=True):
        ann = coco.anns[ref["ann_id"]]
        assert (ref["image_id"], ref["category_id"]) == (ann["image_id"], ann["category_id"])
        assert ref["sentences"][0]["raw"] == phrase and ref["sent_ids"] == [ref["sentences"][0]["sent_id"]]
        assert ref["file_name"] == coco.imgs[ann["image_id"]]["file_name"] and ref["split"] == "train"


def test_a_rerun_replaces_the_folder(out: Path) -> None:
    stray = out / "export/coco/stray.txt"
    stray.write_text("left from before")
    export_coco(out)
    assert not stray.exists() and (out / "export/coco" / MARKER).is_file()
    assert [p.name for p in (out / "export").iterdir() if p.name.startswith(".")] == []  # no temporary folders


def test_a_folder_syngen_did_not_write_is_left_alone(tmp_path: Path) -> None:
    out = make_dataset(tmp_path)
    mine = out / "export/coco/mine.txt"
    mine.parent.mkdir(parents=True)
    mine.write_text("my own files")
    with pytest.raises(UsageError, match="holds files syngen did not write"):
        export_coco(out)
    assert mine.read_text() == "my own files"


def test_a_failed_export_keeps_the_previous_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = make_dataset(tmp_path)
    export_coco(out)
    before = (out / "export/coco/instances.json").read_bytes()

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("syngen.export.coco.json.dumps", full)
    result = CliRunner().invoke(app, ["export", str(out), "--format", "coco"])
    assert result.exit_code == 1 and "No space left on device" in " ".join(result.output.split())
    assert (out / "export/coco/instances.json").read_bytes() == before
    assert sorted(p.name for p in (out / "export").iterdir()) == ["coco"]


@pytest.mark.parametrize("fmt", ["coco", "yolo"])
def test_cli_writes_the_folder_and_refuses_a_folder_without_dataset(tmp_path: Path, fmt: str) -> None:
    result = CliRunner().invoke(app, ["export", str(tmp_path), "--format", fmt])
    assert result.exit_code == 2 and "no dataset folder" in " ".join(result.output.split())
    make_dataset(tmp_path)
    result = CliRunner().invoke(app, ["export", str(tmp_path), "--format", fmt])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "export" / fmt / MARKER).is_file() and (tmp_path / "export" / fmt / "images").is_dir()
