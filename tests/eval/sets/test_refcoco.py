"""lmms-lab/RefCOCO* as published: one expression per (object, sentence), polygons rasterised at the image's
size, metrics per split, each image encoded once; hand-computed scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from syngen.cli import app
from syngen.devtools.layouts import lmms_refcoco, rect
from syngen.eval.sets import open_evalset

LEFT, RIGHT, TOP = (2, 2, 12, 10), (16, 4, 26, 14), (0, 0, 10, 10)  # areas 80, 100, 100


@pytest.fixture
def refcoco(tmp_path: Path) -> Path:
    return lmms_refcoco(
        tmp_path / "RefCOCO",
        {
            "val": [(1, LEFT, ["left box", "the left one"]), (1, RIGHT, ["right box"])],
            "testA": [(2, TOP, ["top box"])],
        },
    )


def test_expressions_are_object_sentence_pairs_with_the_polygon_as_target(refcoco: Path) -> None:
    evalset = open_evalset(str(refcoco))
    assert evalset.name == "refcoco" and sorted(evalset.splits()) == ["testA", "val"]
    found = list(evalset.expressions("val"))
    assert [(e.key, e.phrase, e.image_id) for e in found] == [
        ("0/0", "left box", "COCO_train2014_000000000001.jpg"),
        ("0/1", "the left one", "COCO_train2014_000000000001.jpg"),
        ("1/0", "right box", "COCO_train2014_000000000001.jpg"),
    ]
    record = evalset.record("val", 1)
    assert (evalset.target(record, found[2], 20, 30) == rect(*RIGHT)).all()


def test_metrics_per_split_by_hand(refcoco: Path, policy: Path, predict, tmp_path: Path) -> None:  # noqa: ANN001
    predict(
        {
            "left box": rect(*LEFT),  # I 80, U 80
            "the left one": rect(2, 2, 12, 6),  # I 40, U 80
            "right box": rect(0, 0, 0, 0),  # empty: I 0, U 100
            "top box": rect(5, 0, 15, 10),  # I 50, U 150
        }
    )
    args = ["eval", "ris", "--model", str(policy), "--data", str(refcoco), "--batch-size", "2"]
    result = CliRunner().invoke(app, [*args, "--output-dir", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["format"] == "refcoco" and sorted(report["splits"]) == ["testA", "val"]
    val, test_a = report["metrics"]["val"], report["metrics"]["testA"]
    assert val["n"] == 3 and test_a["n"] == 1
    assert val["oIoU"] == pytest.approx(120 / 260)
    assert val["mIoU"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert val["Prec@0.5"] == pytest.approx(2 / 3) and val["Prec@0.6"] == pytest.approx(1 / 3)
    assert test_a["mIoU"] == pytest.approx(50 / 150) and test_a["oIoU"] == pytest.approx(50 / 150)
    assert report["images_encoded"] == 2  # image 1's three expressions share one encoding
    assert "testA" in result.output and "oIoU" in result.output


def test_one_split_by_name(refcoco: Path, policy: Path, predict, tmp_path: Path) -> None:  # noqa: ANN001
    from syngen.eval.evaluate import evaluate_ris

    predict({"top box": rect(*TOP)})
    report = evaluate_ris(str(policy), str(refcoco), "testA", output_dir=tmp_path / "eval")
    assert report["splits"] == ["testA"] and report["metrics"]["testA"]["mIoU"] == 1.0


def test_expressions_are_scored_image_by_image(policy: Path, predict, tmp_path: Path) -> None:  # noqa: ANN001
    """Rows of one image scattered through the file are scored together (each image meets the cache once)."""
    from syngen.eval.evaluate import evaluate_ris

    data = lmms_refcoco(
        tmp_path / "RefCOCO", {"val": [(1, LEFT, ["a1"]), (2, TOP, ["b1"]), (1, RIGHT, ["a2"]), (2, LEFT, ["b2"])]}
    )
    seen = predict({name: rect(*LEFT) for name in ("a1", "a2", "b1", "b2")})
    report = evaluate_ris(str(policy), str(data), batch_size=1, output_dir=tmp_path / "eval")
    assert seen == ["a1", "a2", "b1", "b2"] and report["images_encoded"] == 2
