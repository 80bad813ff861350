"""Stats: counts, histograms and quantiles of an exported dataset, failures from run.json, the rich rendering."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from rich.console import Console

from syngen.export import export_dataset
from syngen.stages.source import SourceConfig
from syngen.stats import format_summary, read_rows, summarize
from tests.export.test_export import make_info, make_region, make_sample

BOX_SCORES = [0.1, 0.2, 0.3, 0.4, 0.5]
RUN = {
    "stages": {
        "ground": {
            "items_in": 4,
            "items_out": 3,
            "failed": 1,
            "failures": {"no_phrases": 1},
            "stats": {"detections": 5, "filtered_small_box": 2, "filtered_large_box": 0, "no_phrase": 3},
        },
        "segment": {
            "items_in": 3,
            "items_out": 3,
            "failed": 0,
            "failures": {},
            "stats": {"masks": 5, "filtered_mask_score": 1, "filtered_outside_box": 4},
        },
        "negatives": {"items_in": 3, "items_out": 1, "failed": 2, "failures": {"timeout": 1, "ValueError": 1}},
    }
}


def scored(box: tuple[int, int, int, int], score: float, kinds: tuple[str, ...] = ()) -> dict:
    return {**make_region(box, kinds=kinds), "box_score": score, "mask_score": 1 - score}


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four images with 0, 1, 1 and 3 regions; box scores 0.1..0.5; pairs: 3 boundary (IoU 0.5), 1 semantic (0)."""
    out = tmp_path_factory.mktemp("out")
    samples = [
        make_sample(0, []),
        make_sample(1, [scored((10, 10, 50, 40), 0.1, ("boundary", "semantic"))]),
        make_sample(2, [scored((10, 10, 50, 40), 0.2, ("boundary",))]),
        make_sample(3, [scored((10, 10, 50, 40), s, ("boundary",) if s == 0.3 else ()) for s in (0.3, 0.4, 0.5)]),
    ]
    samples[3]["phrases"] = ["red box", "ball", "cup", "dog"]
    export_dataset(samples, out, make_info(), shard_rows=3)
    (out / "run.json").write_text(json.dumps(RUN))
    return out


def test_counts_and_histograms(out: Path) -> None:
    summary = summarize(out)
    assert summary["images"] == 4
    assert summary["regions"] == {
        "total": 5,
        "per_image": {"mean": 1.25, "min": 0, "max": 3, "histogram": {0: 1, 1: 2, 3: 1}},
    }
    assert summary["phrases_per_caption"] == {"mean": 2.5, "min": 2, "max": 4, "histogram": {2: 3, 4: 1}}


def test_score_quantiles(out: Path) -> None:
    box = summarize(out)["box_score"]
    # hand-computed linear-interpolation quantiles of 0.1, 0.2, 0.3, 0.4, 0.5
    expected = {
        "n": 5,
        "mean": 0.3,
        "min": 0.1,
        "p10": 0.14,
        "p25": 0.2,
        "p50": 0.3,
        "p75": 0.4,
        "p90": 0.46,
        "max": 0.5,
    }
    assert box == pytest.approx(expected, abs=1e-6)
    assert summarize(out)["mask_score"]["p50"] == pytest.approx(0.7, abs=1e-6)


def test_preference_pairs_by_kind(out: Path) -> None:
    preference = summarize(out)["preference"]
    assert preference["pairs"] == 4 and preference["by_kind"] == {"boundary": 3, "semantic": 1}
    assert preference["iou"]["min"] == 0.0 and preference["iou"]["max"] == 0.5
    assert preference["iou"]["p25"] == pytest.approx(0.375)
    by_kind = preference["iou_by_kind"]
    assert (by_kind["boundary"]["n"], by_kind["boundary"]["mean"]) == (3, 0.5)
    assert (by_kind["semantic"]["n"], by_kind["semantic"]["max"]) == (1, 0.0)
    assert "pair IoU (boundary)" in render(summarize(out))


def test_box_area_as_a_share_of_the_image(out: Path) -> None:
    """Every region's box is 40 x 30 pixels on a 128 x 96 image."""
    area = summarize(out)["box_area"]
    assert area["n"] == 5 and area["min"] == area["max"] == pytest.approx(40 * 30 / (128 * 96))


def test_failures_by_stage_and_reason(out: Path) -> None:
    summary = summarize(out)
    assert summary["failures"] == {"ground": {"no_phrases": 1}, "negatives": {"timeout": 1, "ValueError": 1}}
    assert summary["stages"]["negatives"] == {"in": 3, "out": 1, "failed": 2}


def test_regions_filtered_by_stage_and_reason(out: Path) -> None:
    summary = summarize(out)
    assert summary["filtered"] == {"ground": {"small_box": 2}, "segment": {"mask_score": 1, "outside_box": 4}}
    text = render(summary)
    assert "small_box: 2" in text and "mask_score: 1, outside_box: 4" in text


def test_without_run_report_or_pairs(tmp_path: Path) -> None:
    export_dataset([make_sample(0, [])], tmp_path, make_info())
    summary = summarize(tmp_path)
    assert (summary["stages"], summary["failures"], summary["filtered"]) == ({}, {}, {})
    assert summary["preference"] == {
        "pairs": 0,
        "by_kind": {},
        "iou": {
            "n": 0,
            "mean": None,
            "min": None,
            "p10": None,
            "p25": None,
            "p50": None,
            "p75": None,
            "p90": None,
            "max": None,
        },
        "iou_by_kind": {},
    }
    assert summary["box_score"]["n"] == 0 and summary["box_area"]["n"] == 0
    text = render(summary)
    assert "pair IoU" in text and "preference pairs" in text


def render(summary: dict) -> str:
    console = Console(record=True, width=160)
    console.print(format_summary(summary))
    return console.export_text()


def test_format_summary_shows_the_numbers(out: Path) -> None:
    text = render(summarize(out))
    for expected in [
        "images",
        "0: 1, 1: 2, 3: 1",
        "boundary: 3, semantic: 1",
        "1.250 / 0 / 3",
        "0.460",
        "timeout: 1, ValueError: 1",
        "no_phrases: 1",
    ]:
        assert expected in text


@pytest.mark.parametrize(
    ("limit", "expected"), [(None, 4), (2, 2), (4, 4), (10, 4), (0, 0)], ids=["all", "fewer", "exact", "more", "zero"]
)
def test_read_rows_stops_at_limit_across_shards(out: Path, limit: int | None, expected: int) -> None:
    rows = list(read_rows(out / "dataset", "grounding", ["id"], limit=limit, batch_size=1))
    assert [row["id"] for row in rows] == [f"img{i:04d}" for i in range(expected)]
    assert list(read_rows(out / "dataset", "no-such-config", ["id"])) == []


def test_failure_reasons_most_common_first_with_example_items(tmp_path: Path) -> None:
    lines = [("source", "bad_image", f"broken{i}.png", "cannot decode image") for i in range(4)]
    lines.append(("phrases", "no_phrases", "a.png", "the answer had no phrase"))
    with (tmp_path / "failures.jsonl").open("w") as f:
        for stage, kind, item, message in lines:
            f.write(json.dumps({"stage": stage, "kind": kind, "item": item, "message": message, "id": "x"}) + "\n")
    reasons = summarize(tmp_path)["reasons"]
    assert reasons == [
        {
            "stage": "source",
            "kind": "bad_image",
            "count": 4,
            "items": ["broken0.png", "broken1.png", "broken2.png"],
            "message": "cannot decode image",
        },
        {
            "stage": "phrases",
            "kind": "no_phrases",
            "count": 1,
            "items": ["a.png"],
            "message": "the answer had no phrase",
        },
    ]
    text = render(summarize(tmp_path))
    assert "broken0.png, broken1.png, broken2.png, ..." in text and "no_phrases" in text


def test_no_failure_table_without_failures(out: Path) -> None:
    assert summarize(out)["reasons"] == [] and "failures.jsonl" not in render(summarize(out))


def test_dataset_of_a_source_only_recipe(tmp_path: Path) -> None:
    """No stage published phrases or regions: their columns are absent, and the statistics count them as empty."""
    stages = {"source": SourceConfig(kind="images", path="seeds")}
    export_dataset([make_sample(0, []), make_sample(1, [])], tmp_path, make_info(), stages=stages)
    assert "regions" not in pq.read_schema(next((tmp_path / "dataset/data/grounding").glob("*.parquet"))).names
    summary = summarize(tmp_path)
    assert summary["images"] == 2 and summary["regions"]["total"] == 0
    assert summary["phrases_per_caption"]["histogram"] == {0: 2}
    assert [row["regions"] for row in read_rows(tmp_path / "dataset", "grounding", ["id", "regions"])] == [None] * 2
