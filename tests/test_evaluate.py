"""`syngen eval ris`: RefCOCO-style tables (RLE or polygons, sentence lists) and syngen datasets score alike."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
from typer.testing import CliRunner

from syngen.cli import app
from syngen.evaluate import evaluate_ris, sentences, to_mask
from syngen.masks import decode_rle, encode_rle
from syngen.train.policy import TextPromptableSam
from tests.train.shapes import make_shapes_dataset

pytestmark = pytest.mark.usefixtures("one_thread")

SQUARE = np.zeros((8, 10), bool)
SQUARE[2:6, 3:7] = True


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(encode_rle(SQUARE), id="compressed-rle"),
        pytest.param({"size": [8, 10], "counts": [26, 4, 4, 4, 4, 4, 4, 4, 26]}, id="uncompressed-rle"),
        pytest.param([[3, 2, 7, 2, 7, 6, 3, 6]], id="polygon-list-pixel-corners"),
        pytest.param([3, 2, 7, 2, 7, 6, 3, 6], id="flat-polygon"),
    ],
)
def test_masks_from_rle_or_polygons(value) -> None:
    mask = to_mask(value, 8, 10)
    assert mask.shape == (8, 10)
    np.testing.assert_array_equal(mask, SQUARE)


@pytest.mark.parametrize(
    "cell, expected",
    [
        pytest.param("the cat", ["the cat"], id="string"),
        pytest.param(["a", "b"], ["a", "b"], id="list-of-strings"),
        pytest.param(
            [{"sent": "left dog", "raw": "Left dog!"}, {"raw": "the dog"}], ["left dog", "the dog"], id="dicts"
        ),
        pytest.param([], [], id="none"),
    ],
)
def test_sentences(cell, expected) -> None:
    assert sentences(cell) == expected


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("policy")
    TextPromptableSam.from_parts("tiny:segmenter", "tiny:text-encoder", prompter_heads=2).save_pretrained(folder)
    return folder


def refcoco_style(shapes: Path, path: Path) -> Path:
    """The shapes dataset's regions as a RefCOCO-style parquet file: one row per object, two sentences each."""
    grounding = datasets.load_dataset(str(shapes / "dataset"), "grounding", split="train")
    rows = {"picture": [], "refs": [], "rle": []}
    for row in grounding:
        for region in row["regions"]:
            rows["picture"].append(row["image"])
            rows["refs"].append([{"sent": region["phrase"]}, {"raw": region["phrase"]}])
            rows["rle"].append(region["mask"])
    datasets.Dataset.from_dict(rows).cast_column("picture", datasets.Image()).to_parquet(str(path))
    return path


def test_refcoco_style_parquet_scores_as_the_syngen_dataset(policy: Path, tmp_path: Path) -> None:
    shapes = make_shapes_dataset(tmp_path / "shapes", images=2, kinds=())
    table = refcoco_style(shapes, tmp_path / "refs.parquet")
    result = CliRunner().invoke(
        app,
        ["eval", "ris", "--model", str(policy), "--data", str(table), "--image-column", "picture",
         "--text-column", "refs", "--mask-column", "rle", "--batch-size", "3"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((policy / "eval-ris-refs.parquet-train.json").read_text())
    assert report["metrics"]["n"] == 2 * 2 * 2  # two images, two objects, two sentences each
    native = evaluate_ris(str(policy), str(shapes), batch_size=4)["metrics"]
    assert native["n"] == 4
    for key in ("oIoU", "mIoU", "gIoU", "Prec@0.5"):
        assert report["metrics"][key] == pytest.approx(native[key]), key
    assert "oIoU" in result.output and "Prec@0.9" in result.output


def test_a_missing_column_is_named(policy: Path, tmp_path: Path) -> None:
    shapes = make_shapes_dataset(tmp_path / "shapes", images=1, kinds=())
    table = refcoco_style(shapes, tmp_path / "refs.parquet")
    result = CliRunner().invoke(app, ["eval", "ris", "--model", str(policy), "--data", str(table)])
    assert result.exit_code == 2
    assert "no column image, sentences, segmentation; columns: picture, refs, rle" in " ".join(result.output.split())


def test_perfect_predictions_score_one(policy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the policy's masks replaced by the targets, every metric is 1: the pipeline around the model is exact."""
    shapes = make_shapes_dataset(tmp_path / "shapes", images=2, kinds=())
    grounding = datasets.load_dataset(str(shapes / "dataset"), "grounding", split="train")
    truth = iter(decode_rle(r["mask"]) for row in grounding for r in row["regions"])
    monkeypatch.setattr("syngen.evaluate.image_masks", lambda logits, sizes, size: [next(truth) for _ in sizes])
    scores = evaluate_ris(str(policy), str(shapes), batch_size=3)["metrics"]
    assert scores["n"] == 4
    assert all(scores[k] == 1.0 for k in ("oIoU", "mIoU", "gIoU", "Prec@0.9"))
