"""moondream/refcoco-m as published: RLE masks under samples[], every (image, sentence) pair one example, mIoU
over all of them as its card states; hand-computed scores."""

from __future__ import annotations

from pathlib import Path

import pytest

from syngen.devtools.layouts import rect, refcoco_m
from syngen.eval.evaluate import evaluate_ris
from syngen.eval.sets import open_evalset

A, B, C = (0, 0, 10, 10), (10, 5, 20, 15), (5, 5, 25, 15)  # areas 100, 100, 200


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return refcoco_m(
        tmp_path / "refcoco-m",
        [(3, [(A, ["man on left", "left guy"]), (B, ["middle"])]), (4, [(C, ["big box"])])],
    )


def test_every_sentence_of_every_sample_with_its_rle_mask(dataset: Path) -> None:
    evalset = open_evalset(str(dataset))
    assert evalset.name == "refcoco-m" and evalset.splits() == ["validation"]
    found = list(evalset.expressions("validation"))
    assert [(e.key, e.image_id, e.phrase) for e in found] == [
        ("0/0/0", "3", "man on left"),
        ("0/0/1", "3", "left guy"),
        ("0/1/0", "3", "middle"),
        ("1/0/0", "4", "big box"),
    ]
    record = evalset.record("validation", 0)
    assert (evalset.target(record, found[2], 20, 30) == rect(*B)).all()


def test_miou_over_image_sentence_pairs_by_hand(dataset: Path, policy: Path, predict, tmp_path: Path) -> None:  # noqa: ANN001
    predict(
        {
            "man on left": rect(*A),  # IoU 1
            "left guy": rect(0, 0, 5, 10),  # I 50, U 100
            "middle": rect(0, 0, 10, 10),  # disjoint from B: I 0, U 200
            "big box": rect(5, 5, 15, 15),  # I 100, U 200
        }
    )
    metrics = evaluate_ris(str(policy), str(dataset), output_dir=tmp_path / "eval")["metrics"]["validation"]
    assert metrics["n"] == 4
    assert metrics["mIoU"] == pytest.approx((1 + 0.5 + 0 + 0.5) / 4)
    assert metrics["oIoU"] == pytest.approx(250 / 600)
