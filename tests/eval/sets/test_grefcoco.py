"""gRefCOCO from the G_REFER files: multi-object targets as the union of their (non-crowd) masks, no-target
expressions with an empty target, gIoU / cIoU / N-acc / T-acc by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from syngen.devtools.layouts import gref, grefcoco, polygon, rect
from syngen.eval.evaluate import evaluate_ris
from syngen.eval.sets import open_evalset

LEFT, RIGHT, CROWD = (2, 2, 12, 10), (16, 4, 26, 14), (0, 12, 10, 20)  # areas 80, 100, 80


def uncompressed_rle(r: tuple[int, int, int, int]) -> dict:
    """COCO's uncompressed RLE, as crowd annotations store it: column-major run lengths, zeros first."""
    flat = rect(*r).flatten(order="F").astype(int)
    changes = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    counts = [0, *runs] if flat[0] else runs
    assert (mask_utils.decode(mask_utils.frPyObjects({"size": [20, 30], "counts": counts}, 20, 30)) == rect(*r)).all()
    return {"size": [20, 30], "counts": counts}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    annotations = [
        {"id": 11, "segmentation": [polygon(LEFT)], "bbox": [2, 2, 10, 8], "area": 80, "iscrowd": 0},
        {"id": 12, "segmentation": [polygon(RIGHT)], "bbox": [16, 4, 10, 10], "area": 100, "iscrowd": 0},
        {"id": 13, "segmentation": uncompressed_rle(CROWD), "bbox": [0, 12, 10, 8], "area": 80, "iscrowd": 1},
    ]
    refs = [
        gref(1, "val", [11], "Left box"),
        gref(2, "val", [11, 12], "Both boxes"),
        gref(3, "val", [-1], "The dog", "The cat"),
        gref(4, "val", [12, 13], "Right box"),
        gref(5, "val", [11], "Left again"),
        gref(6, "train", [12], "Train only"),
    ]
    return grefcoco(tmp_path / "gref", annotations, refs)


def test_targets_union_and_no_target(root: Path) -> None:
    evalset = open_evalset(str(root))
    assert evalset.name == "grefcoco" and evalset.default_splits() == ["val"]
    found = {e.phrase: e for e in evalset.expressions("val")}
    assert len(found) == 6 and found["The dog"].target == () and found["Both boxes"].target == (11, 12)
    record = evalset.record("val", 1)
    target = lambda phrase: evalset.target(record, found[phrase], 20, 30)  # noqa: E731
    assert (target("Both boxes") == (rect(*LEFT) | rect(*RIGHT))).all()
    assert (target("Right box") == rect(*RIGHT)).all()  # the crowd annotation is left out
    assert not target("The cat").any()
    assert open_evalset(str(root / "grefcoco")).name == "grefcoco"  # the annotation folder itself


def test_gres_metrics_by_hand(root: Path, policy: Path, predict, tmp_path: Path) -> None:  # noqa: ANN001
    empty = rect(0, 0, 0, 0)
    predict(
        {
            "Left box": rect(*LEFT),  # target, IoU 1 (I 80, U 80)
            "Both boxes": rect(*LEFT),  # multi-target answered with one: I 80, U 180
            "The dog": empty,  # no-target answered empty: IoU 1, I = U = 0
            "The cat": rect(0, 0, 5, 6),  # no-target answered with 30 pixels: IoU 0, U 30
            "Right box": rect(*RIGHT),  # IoU 1 (the crowd annotation is not part of the target)
            "Left again": empty,  # target answered empty: IoU 0, U 80
        }
    )
    report = evaluate_ris(str(policy), str(root), output_dir=tmp_path / "eval", batch_size=4)
    assert report["splits"] == ["val"]
    metrics = report["metrics"]["val"]
    assert metrics["n"] == 6
    assert metrics["gIoU"] == pytest.approx((1 + 80 / 180 + 1 + 0 + 1 + 0) / 6)
    assert metrics["cIoU"] == pytest.approx((80 + 80 + 0 + 0 + 100 + 0) / (80 + 180 + 0 + 30 + 100 + 80))
    assert metrics["N-acc"] == pytest.approx(1 / 2)
    assert metrics["T-acc"] == pytest.approx(3 / 4)
    assert metrics["Prec@0.5"] == pytest.approx(2 / 4)  # over the four target expressions
