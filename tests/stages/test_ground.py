"""The ground stage: prompts, token-limit passes, label -> phrase mapping, best/all, NMS, degenerate boxes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from syngen.models.grounding_dino import GroundingDino
from syngen.models.loading import build_tiny
from syngen.sample import Failure, image_bytes
from syngen.stages.base import Context
from syngen.stages.ground import Ground, GroundConfig
from tests.fakes import FakeGrounder
from tests.helpers import draw_shapes

WIDTH, HEIGHT = 128, 96


def det(label: str, box: list[float], score: float = 0.9) -> dict[str, Any]:
    return {"label": label, "box": box, "score": score}


def sample(phrases: list[str], n: int = 0) -> dict[str, Any]:
    return {"id": f"s{n}", "image": image_bytes(draw_shapes((WIDTH, HEIGHT), seed=n)), "phrases": phrases}


def run(grounder: Any, samples: list[dict], **config: Any) -> list:
    stage = Ground(GroundConfig(**config), Context(recipe_dir=Path(".")))
    return stage.process(samples, grounder)


def asked(grounder: FakeGrounder) -> list[str]:
    """Every phrase asked, in order, over all prompts."""
    return [phrase for prompts in grounder.calls for prompt in prompts for phrase in prompt[:-1].split(". ")]


@pytest.mark.parametrize(
    ("phrases", "prompt"),
    [
        (["Red Circle", "blue box"], "red circle. blue box."),
        (["a cat", "A Cat", "dog"], "a cat. dog."),
        (["mr. smith?", "  the   sky "], "mr smith. the sky."),
    ],
    ids=["lower-case-joined", "duplicates-once", "dots-and-spaces-cleaned"],
)
def test_prompt(phrases: list[str], prompt: str) -> None:
    grounder = FakeGrounder()
    run(grounder, [sample(phrases)])
    assert grounder.calls == [[prompt]]


def test_token_limit_splits_phrases_over_passes_batched_across_images() -> None:
    long = [f"{colour} {shape}" for colour in ("red", "blue", "green") for shape in ("box", "ring", "cup", "cat")]
    short = ["red box", "blue ring"]
    grounder = FakeGrounder()
    [first, second] = run(grounder, [sample(long, 0), sample(short, 1)], max_text_tokens=12)
    # 12 tokens hold three "x y." phrases (3 tokens each) with [CLS] and [SEP]: 12 phrases need 4 passes.
    assert [len(prompts) for prompts in grounder.calls] == [2, 1, 1, 1]
    assert all(grounder.count_tokens(p) <= 12 for prompts in grounder.calls for p in prompts)
    assert sorted(asked(grounder)) == sorted(long + short)  # every phrase asked exactly once
    assert first["ground_stats"]["prompts"] == 4 and second["ground_stats"]["prompts"] == 1


def test_phrase_over_the_limit_alone_is_dropped_and_counted() -> None:
    grounder = FakeGrounder()
    [result] = run(grounder, [sample(["red box", "a big red box near the white wall"])], max_text_tokens=8)
    assert asked(grounder) == ["red box"]
    assert result["ground_stats"]["dropped_long_phrases"] == 1


@pytest.mark.parametrize(
    ("label", "phrase"),
    [
        ("red circle", "red circle"),
        ("Red Circle .", "red circle"),
        ("man ' s hat", "man's hat"),
        ("red circle blue box", None),
        ("circle", None),
    ],
    ids=["exact", "case-and-dot", "tokenizer-spacing", "two-phrases-merged", "part-of-a-phrase"],
)
def test_label_maps_to_the_phrase_that_equals_it(label: str, phrase: str | None) -> None:
    grounder = FakeGrounder([det(label, [10, 10, 50, 50])])
    [result] = run(grounder, [sample(["red circle", "blue box", "man's hat"])])
    assert [r["phrase"] for r in result["regions"]] == ([phrase] if phrase else [])
    assert result["ground_stats"]["unmatched_labels"] == (0 if phrase else 1)


@pytest.mark.parametrize(
    ("keep", "expected"),
    [
        ("best", [("blue box", 0.7), ("red circle", 0.9)]),
        ("all", [("blue box", 0.7), ("red circle", 0.9), ("red circle", 0.5)]),
    ],
    ids=["best", "all"],
)
def test_keep_best_or_all_in_phrase_order(keep: str, expected: list[tuple[str, float]]) -> None:
    grounder = FakeGrounder(
        [
            det("red circle", [0, 0, 20, 20], 0.5),
            det("red circle", [50, 50, 90, 90], 0.9),
            det("blue box", [5, 5, 9, 9], 0.7),
        ]
    )
    [result] = run(grounder, [sample(["blue box", "red circle"])], keep=keep)
    assert [(r["phrase"], r["box_score"]) for r in result["regions"]] == expected
    assert result["ground_stats"]["detections"] == len(expected)


@pytest.mark.parametrize(
    ("nms_iou", "phrases"),
    [(None, ["red circle", "blue box"]), (0.9, ["red circle", "blue box"]), (0.5, ["red circle"])],
    ids=["off", "above-overlap", "below-overlap"],
)
def test_nms_across_phrases(nms_iou: float | None, phrases: list[str]) -> None:
    # The two boxes overlap with IoU 0.8: the smaller lies inside the larger, with 0.8 of its area.
    grounder = FakeGrounder([det("red circle", [0, 0, 100, 80], 0.9), det("blue box", [0, 0, 100, 64], 0.6)])
    [result] = run(grounder, [sample(["red circle", "blue box"])], nms_iou=nms_iou, keep="all")
    assert [r["phrase"] for r in result["regions"]] == phrases
    assert result["ground_stats"]["dropped_nms"] == 2 - len(phrases)


def test_degenerate_boxes_dropped_and_counted_kept_boxes_clipped() -> None:
    grounder = FakeGrounder(
        [
            det("red circle", [math.nan, 0, 10, 10]),
            det("red circle", [10, 10, 10, 40]),  # zero width
            det("red circle", [WIDTH + 5, 0, WIDTH + 30, 20]),  # right of the image
            det("red circle", [-4, -2, 50, HEIGHT + 9], 0.5),  # partly outside: clipped
        ]
    )
    [result] = run(grounder, [sample(["red circle"])], keep="all")
    assert [r["box"] for r in result["regions"]] == [[0.0, 0.0, 50.0, float(HEIGHT)]]
    assert result["ground_stats"]["dropped_degenerate"] == 3


@pytest.mark.parametrize("phrases", [["red circle"], []], ids=["nothing-found", "no-phrases"])
def test_no_detection_is_a_sample_without_regions(phrases: list[str]) -> None:
    grounder = FakeGrounder()
    [result] = run(grounder, [sample(phrases)])
    assert not isinstance(result, Failure)
    assert result["regions"] == []
    assert result["ground_stats"] == {
        "detections": 0,
        "dropped_degenerate": 0,
        "dropped_nms": 0,
        "unmatched_labels": 0,
        "dropped_long_phrases": 0,
        "prompts": len(grounder.calls),
    }


@pytest.mark.parametrize(
    "config",
    [
        {"box_threshold": 1.5},
        {"text_threshold": -0.1},
        {"keep": "some"},
        {"nms_iou": 2},
        {"max_text_tokens": 300},
        {"thresh": 1},
    ],
    ids=["box-threshold", "text-threshold", "keep", "nms-iou", "max-text-tokens", "unknown-field"],
)
def test_config_is_validated(config: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        GroundConfig(**config)


def test_end_to_end_on_the_tiny_twin() -> None:
    grounder = GroundingDino(build_tiny("grounder"))
    samples = [sample(["red circle"], 0), sample(["blue box", "cat"], 1)]
    results = run(grounder, samples, box_threshold=0.3, text_threshold=0.0, keep="all")
    # text_threshold 0 labels each detection with its whole prompt: it matches a phrase only on one-phrase prompts.
    assert results[0]["regions"] and results[1]["regions"] == []
    assert results[1]["ground_stats"]["unmatched_labels"] > 0
    for result in results:
        assert result["ground_stats"]["detections"] == len(result["regions"])
        for region in result["regions"]:
            x1, y1, x2, y2 = region["box"]
            assert region["phrase"] == "red circle" and 0 < region["box_score"] <= 1
            assert 0 <= x1 < x2 <= WIDTH and 0 <= y1 < y2 <= HEIGHT
