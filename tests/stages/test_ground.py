"""The ground stage: prompts, token-limit passes, detection -> phrase mapping by token positions, best/all, NMS,
degenerate boxes, box-area filters."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError

from syngen.devtools.fakes import FakeGrounder, FakeInstanceGrounder
from syngen.masks import box_mask, decode_rle
from syngen.models.grounding_dino import GroundingDino
from syngen.models.loading import build_tiny
from syngen.sample import Failure, image_bytes
from syngen.stages.base import Context
from syngen.stages.ground import Ground, GroundConfig
from syngen.store import to_json
from tests.helpers import draw_shapes

WIDTH, HEIGHT = 128, 96


def det(phrase: str, box: list[float], score: float = 0.9) -> dict[str, Any]:
    return {"phrase": phrase, "label": phrase, "box": box, "score": score}


def sample(phrases: list[str], n: int = 0) -> dict[str, Any]:
    return {"id": f"s{n}", "image": image_bytes(draw_shapes((WIDTH, HEIGHT), seed=n)), "phrases": phrases}


def run(grounder: Any, samples: list[dict], **config: Any) -> list:
    stage = Ground(GroundConfig(**config), Context(recipe_dir=Path(".")))
    return stage.outcomes(samples, grounder)


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


@pytest.fixture(scope="module")
def twin() -> GroundingDino:
    return GroundingDino(build_tiny("grounder"))


def scripted(grounder: GroundingDino, scores: dict[tuple[int, str, int], float]) -> Any:
    """Makes the twin's next forward passes score query 0 on chosen prompt tokens, everything else ~0.

    ``scores``: {(phrase index, word, occurrence within that phrase): probability}; query 0's box is fixed.
    Returns the hook handle (remove it after use)."""

    def hook(module: Any, args: Any, kwargs: dict, output: Any) -> Any:
        logits = torch.full_like(output.logits, -30.0)
        for b, ids in enumerate(kwargs["input_ids"].tolist()):
            for (phrase, word, nth), prob in scores.items():
                logits[b, 0, _position(grounder, ids, phrase, word, nth)] = math.log(prob / (1 - prob))
        output.logits = logits
        output.pred_boxes[:, 0] = torch.tensor([0.5, 0.5, 0.5, 0.5])
        return output

    return grounder.model.register_forward_hook(hook, with_kwargs=True)


def _position(grounder: GroundingDino, ids: list[int], phrase: int, word: str, nth: int) -> int:
    """Position of the ``nth`` token ``word`` (or ".") inside the ``phrase``-th "."-separated part of a prompt."""
    tokens = grounder.processor.tokenizer.convert_ids_to_tokens(ids)
    parts: list[list[int]] = [[]]
    for position, token in enumerate(tokens[1:], start=1):
        parts[-1].append(position)
        if token == ".":
            parts.append([])
    return [p for p in parts[phrase] if tokens[p] == word][nth]


@pytest.mark.parametrize(
    ("phrases", "scores", "expected"),
    [
        pytest.param(["red ball", "table"], {(0, "ball", 0): 0.6}, "red ball", id="head-noun-only"),
        pytest.param(["ball", "red ball"], {(1, "ball", 0): 0.6}, "red ball", id="head-noun-equals-another-phrase"),
        pytest.param(
            ["red ball", "table"],
            {(0, "ball", 0): 0.7, (0, "red", 0): 0.3, (1, "table", 0): 0.5},
            "red ball",
            id="spans-two-phrases",
        ),
        pytest.param(
            ["blue box", "red ball"],
            {(0, "box", 0): 0.5, (1, "red", 0): 0.4, (1, "ball", 0): 0.4},
            "red ball",
            id="most-mass-not-highest-token",
        ),
        pytest.param(["a zebra", "table"], {(0, "[UNK]", 0): 0.6}, "a zebra", id="unknown-word"),
        pytest.param(["red ball", "table"], {(0, ".", 0): 0.6}, None, id="only-a-separator"),
        pytest.param(["red ball", "table"], {(1, "table", 0): 0.4}, None, id="no-token-above-text-threshold"),
    ],
)
def test_detection_reaches_the_phrase_holding_most_of_its_token_scores(
    twin: GroundingDino, phrases: list[str], scores: dict, expected: str | None
) -> None:
    handle = scripted(twin, scores)
    try:
        [result] = run(twin, [sample(phrases)], box_threshold=0.35, text_threshold=0.25 if expected else 0.5)
    finally:
        handle.remove()
    assert [r["phrase"] for r in result["regions"]] == ([expected] if expected else [])
    assert result["ground_stats"]["detections"] == (1 if expected else 0)
    assert result["ground_stats"]["no_phrase"] == (0 if expected else 1)


def test_detection_reaches_its_phrase_in_a_later_pass(twin: GroundingDino) -> None:
    # two passes ("red ball." and "ball."): the second's phrase 0 is "ball", not the first's "red ball"
    handle = scripted(twin, {(0, "ball", 0): 0.6})
    try:
        [result] = run(twin, [sample(["red ball", "ball"])], max_text_tokens=6, keep="all")
    finally:
        handle.remove()
    assert result["ground_stats"]["prompts"] == 2
    assert [r["phrase"] for r in result["regions"]] == ["red ball", "ball"]
    assert [r["label"] for r in result["regions"]] == ["ball", "ball"]  # kept for information


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
        "filtered_small_box": 0,
        "filtered_large_box": 0,
        "no_phrase": 0,
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


def test_end_to_end_on_the_tiny_twin(twin: GroundingDino) -> None:
    samples = [sample(["red circle"], 0), sample(["blue box", "cat"], 1)]
    results = run(twin, samples, box_threshold=0.3, text_threshold=0.0, keep="all")
    # text_threshold 0 labels each detection with its whole prompt; token scores still place it in one phrase.
    assert results[0]["regions"] and results[1]["regions"]
    for result, phrases in zip(results, (["red circle"], ["blue box", "cat"]), strict=True):
        assert result["ground_stats"]["detections"] == len(result["regions"])
        assert result["ground_stats"]["no_phrase"] == 0
        for region in result["regions"]:
            x1, y1, x2, y2 = region["box"]
            assert region["phrase"] in phrases and 0 < region["box_score"] <= 1
            assert 0 <= x1 < x2 <= WIDTH and 0 <= y1 < y2 <= HEIGHT


@pytest.mark.parametrize(
    ("limit", "passes"),
    [
        pytest.param(8, [["cat", "dog", "sky"], ["man", "hat"]], id="prompt-of-exactly-the-limit"),
        pytest.param(7, [["cat", "dog"], ["sky", "man"], ["hat"]], id="one-token-over-the-limit-splits"),
    ],
)
def test_a_prompt_never_exceeds_max_text_tokens(twin: GroundingDino, limit: int, passes: list[list[str]]) -> None:
    # "cat. dog. sky." is 8 tokens with [CLS] and [SEP]; a prompt over the limit would be cut silently
    grounder = FakeGrounder()
    grounder.count_tokens = twin.count_tokens  # type: ignore[method-assign]
    run(grounder, [sample(["cat", "dog", "sky", "man", "hat"])], max_text_tokens=limit)
    assert [prompts[0][:-1].split(". ") for prompts in grounder.calls] == passes
    assert all(twin.count_tokens(prompts[0]) <= limit for prompts in grounder.calls)


# WIDTH x HEIGHT = 12288 pixels
TINY, QUARTER, WHOLE = [0, 0, 16, 12], [0, 0, 64, 48], [0, 0, WIDTH, HEIGHT]  # 1/64, 1/4 and all of the image


@pytest.mark.parametrize(
    ("limits", "kept", "small", "large"),
    [
        pytest.param({}, [WHOLE, QUARTER, TINY], 0, 0, id="defaults-keep-all"),
        pytest.param({"min_box_area": 1 / 64}, [WHOLE, QUARTER, TINY], 0, 0, id="min-edge-kept"),
        pytest.param({"min_box_area": 0.02}, [WHOLE, QUARTER], 1, 0, id="min"),
        pytest.param({"max_box_area": 0.25}, [QUARTER, TINY], 0, 1, id="max-edge-kept"),
        pytest.param({"min_box_area": 0.02, "max_box_area": 0.9}, [QUARTER], 1, 1, id="both"),
    ],
)
def test_box_area_filters_drop_and_count(limits: dict, kept: list, small: int, large: int) -> None:
    grounder = FakeGrounder([det("red circle", WHOLE, 0.9), det("red circle", QUARTER, 0.6), det("red circle", TINY)])
    grounder.detections[2]["score"] = 0.4
    [result] = run(grounder, [sample(["red circle"])], keep="all", **limits)
    assert [r["box"] for r in result["regions"]] == [[float(v) for v in box] for box in kept]
    stats = result["ground_stats"]
    assert (stats["filtered_small_box"], stats["filtered_large_box"], stats["detections"]) == (small, large, len(kept))


def test_box_area_filter_applies_before_the_best_box_is_chosen() -> None:
    grounder = FakeGrounder([det("red circle", WHOLE, 0.9), det("red circle", QUARTER, 0.6)])
    [result] = run(grounder, [sample(["red circle"])], max_box_area=0.5)
    assert [(r["box"], r["box_score"]) for r in result["regions"]] == [([0.0, 0.0, 64.0, 48.0], 0.6)]


@pytest.mark.parametrize(
    "limits",
    [{"min_box_area": 0.5, "max_box_area": 0.5}, {"min_box_area": 0.6, "max_box_area": 0.4}, {"max_box_area": 1.5}],
    ids=["empty-range", "inverted-range", "above-1"],
)
def test_box_area_range_is_validated(limits: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        GroundConfig(**limits)


def test_fingerprint_at_defaults_is_the_one_stored_before_the_filters_existed() -> None:
    # recorded on ec140c1 (before min_box_area / max_box_area): stored results must survive the upgrade
    before = (
        '{"stage":"ground","config":{"model":{"id":"IDEA-Research/grounding-dino-tiny","revision":null,'
        '"backend":null,"trust_remote_code":false},"box_threshold":0.35,"text_threshold":0.25,"keep":"best",'
        '"nms_iou":null,"max_text_tokens":256}}'
    )
    model = "IDEA-Research/grounding-dino-tiny"
    stage = Ground(GroundConfig(model=model), Context(recipe_dir=Path(".")))
    assert to_json(stage.fingerprint()) == before
    changed = Ground(GroundConfig(model=model, min_box_area=0.01), Context(recipe_dir=Path(".")))
    assert to_json(changed.fingerprint()) != before


def test_same_size_images_ground_alike_in_any_batch(twin: GroundingDino) -> None:
    # synthesized images share one size: batching changes only float rounding (docs/limits.md)
    samples = [sample(["red circle", "blue box"], 0), sample(["cat"], 1), sample(["a big dog", "ball", "cup"], 2)]
    together = run(twin, samples, box_threshold=0.3, keep="all")
    for one, batched in zip(samples, together, strict=True):
        [alone] = run(twin, [one], box_threshold=0.3, keep="all")
        assert alone["ground_stats"] == batched["ground_stats"]
        assert [r["phrase"] for r in alone["regions"]] == [r["phrase"] for r in batched["regions"]]
        for a, b in zip(alone["regions"], batched["regions"], strict=True):
            assert a["box"] == pytest.approx(b["box"], abs=1e-3) and a["box_score"] == pytest.approx(b["box_score"])


# --- SAM 3 (a grounder that also segments): regions carry their masks -------------------------------------------

CAT = [([10, 10, 50, 40], 0.9), ([60, 20, 100, 70], 0.6), ([0, 50, 30, 90], 0.3)]


def masked(instances: dict, samples: list[dict], **config: Any) -> tuple[FakeInstanceGrounder, list]:
    grounder = FakeInstanceGrounder(instances)
    return grounder, run(grounder, samples, model="tiny:sam3", **config)


@pytest.mark.parametrize(
    ("config", "boxes"),
    [
        ({"keep": "all"}, [[10, 10, 50, 40], [60, 20, 100, 70]]),
        ({"keep": "best"}, [[10, 10, 50, 40]]),
        ({"keep": "all", "box_threshold": 0.2}, [[10, 10, 50, 40], [60, 20, 100, 70], [0, 50, 30, 90]]),
        ({"keep": "all", "box_threshold": 0.95}, []),
    ],
    ids=["all-above-threshold", "best-only", "lower-threshold", "none-above-threshold"],
)
def test_sam3_regions_carry_masks_keep_and_threshold(config: dict, boxes: list) -> None:
    grounder, [update] = masked({"cat": CAT}, [sample(["cat", "dog"])], **config)
    assert grounder.calls[0][2] == config.get("box_threshold", 0.35)
    assert [r["box"] for r in update["regions"]] == boxes
    for region in update["regions"]:
        assert region["phrase"] == region["label"] == "cat"
        assert (decode_rle(region["mask"]) == box_mask(region["box"], HEIGHT, WIDTH)).all()
        assert region["mask_score"] == region["box_score"]
    assert update["ground_stats"]["detections"] == len(boxes)


def test_sam3_one_embedding_and_one_call_per_batch() -> None:
    samples = [sample(["cat", "a cat", "A Cat"], 0), sample([], 1), sample(["dog", "cat"], 2)]
    grounder, updates = masked({"cat": CAT[:1]}, samples)
    assert grounder.embedded == [["s0", "s2"]]  # an image with no phrase is not embedded
    assert grounder.calls == [(["s0", "s2"], [["cat", "a cat"], ["dog", "cat"]], 0.35)]
    assert [len(u["regions"]) for u in updates] == [1, 0, 1]  # "a cat" matched nothing: no region
    assert [u["ground_stats"]["prompts"] for u in updates] == [1, 0, 1]
    grounder, [update] = masked({"cat": CAT}, [sample([], 3)])  # a batch with no phrase: no model call at all
    assert (grounder.embedded, grounder.calls, update["regions"]) == ([], [], [])


def test_sam3_long_phrases_and_empty_masks_are_counted() -> None:
    long = " ".join(["red"] * 40)
    grounder, [update] = masked({"cat": [([-1, 10, 40, 50], 0.9), ([60, 20, 100, 70], 0.8)]}, [sample([long, "cat"])])
    assert grounder.calls[0][1] == [["cat"]]
    stats = update["ground_stats"]
    assert (stats["dropped_long_phrases"], stats["dropped_empty_mask"], stats["detections"]) == (1, 1, 1)


@pytest.mark.parametrize(
    ("model", "mask_column"),
    [("tiny:grounder", False), ("tiny:sam3", True), ({"id": "facebook/sam3", "backend": "sam3"}, True)],
    ids=["grounding-dino", "sam3-twin", "sam3-checkpoint"],
)
def test_published_regions_have_masks_only_with_sam3(model: Any, mask_column: bool) -> None:
    [column] = Ground.published(GroundConfig(model=model)).values()
    assert ("mask" in column.feature.feature) is mask_column
