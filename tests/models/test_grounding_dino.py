"""The GroundingDINO and MM-Grounding-DINO adapters on their tiny twins: phrase splitting, token counts, batched
detection in pixels."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers.models.grounding_dino.modeling_grounding_dino import (
    SPECIAL_TOKENS,
    generate_masks_with_special_tokens_and_transfer_map,
)

from syngen.models.grounding_dino import GroundingDino, MMGroundingDino
from syngen.models.loading import build_tiny
from syngen.models.twins.grounding_dino import build_grounding_dino, build_mm_grounding_dino
from tests.helpers import draw_shapes

GROUNDERS = {  # twin -> adapter, model class (as on the real checkpoint)
    "grounder": (GroundingDino, "GroundingDinoForObjectDetection"),
    "grounder-mm-grounding-dino": (MMGroundingDino, "MMGroundingDinoForObjectDetection"),
}


@pytest.fixture(scope="module", params=list(GROUNDERS))
def grounder(request: pytest.FixtureRequest) -> GroundingDino:
    adapter, _ = GROUNDERS[request.param]
    return adapter(build_tiny(request.param))


def test_twin_uses_the_real_checkpoint_classes(grounder: GroundingDino) -> None:
    [(_, model_class)] = [spec for spec in GROUNDERS.values() if type(grounder) is spec[0]]
    assert type(grounder.model).__name__ == model_class
    assert type(grounder.processor).__name__ == "GroundingDinoProcessor"


def test_prompt_splits_into_phrases(grounder: GroundingDino) -> None:
    # GroundingDINO splits on hard-coded bert-base-uncased ids; a tokenizer without them never splits.
    ids = grounder.processor(text="red circle. blue box.", return_tensors="pt")["input_ids"]
    assert ids[0, 0] == 101 and ids[0, -1] == 102 and (ids[0] == 1012).sum() == 2
    attention, positions = generate_masks_with_special_tokens_and_transfer_map(ids, torch.tensor(SPECIAL_TOKENS))
    assert positions[0].tolist() == [0, 0, 1, 2, 0, 1, 2, 0]
    red, blue = 1, 4
    assert attention[0, red, red + 1] and not attention[0, red, blue]


@pytest.mark.parametrize(
    ("text", "tokens"),
    [("cat.", 4), ("red circle. blue box.", 8), ("a man's hat.", 8)],
    ids=["one-word", "two-phrases", "apostrophe"],
)
def test_count_tokens(grounder: GroundingDino, text: str, tokens: int) -> None:
    assert grounder.count_tokens(text) == tokens


def test_detect_batches_images_with_boxes_in_pixels(grounder: GroundingDino) -> None:
    images = [draw_shapes((128, 96), seed=0), draw_shapes((90, 140), seed=1)]
    prompts = ["red circle.", "blue box. cat."]
    calls = []
    handle = grounder.model.register_forward_hook(lambda module, args, kwargs_out: calls.append(1))
    try:
        found = grounder.detect(images, prompts, box_threshold=0.3, text_threshold=0.0)
    finally:
        handle.remove()
    assert len(calls) == 1 and len(found) == 2

    # Independent conversion of the raw output: sigmoid scores, (cx, cy, w, h) in [0, 1] -> xyxy pixels.
    inputs = grounder.processor(images=images, text=prompts, padding=True, return_tensors="pt")
    with torch.no_grad():
        raw = grounder.model(**inputs)
    for i, image in enumerate(images):
        scores = torch.sigmoid(raw.logits[i]).max(-1).values.numpy()
        cx, cy, w, h = raw.pred_boxes[i].numpy().T
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1) * ([image.width, image.height] * 2)
        keep = scores > 0.3
        assert keep.sum() == len(found[i]) > 0
        np.testing.assert_allclose([d["box"] for d in found[i]], boxes[keep], rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose([d["score"] for d in found[i]], scores[keep], rtol=1e-5)
    # text_threshold 0 takes every prompt token: the label is the whole prompt, special tokens removed.
    assert {d["label"] for d in found[0]} == {"red circle."}
    assert {d["label"] for d in found[1]} == {"blue box. cat."}


def test_detect_without_detections(grounder: GroundingDino) -> None:
    assert grounder.detect([draw_shapes()], ["cat."], box_threshold=1.0, text_threshold=0.25) == [[]]


@pytest.mark.parametrize("build", [build_grounding_dino, build_mm_grounding_dino], ids=["gdino", "mm-gdino"])
def test_tiny_twin_is_deterministic(tmp_path: Path, build: Callable[[Path], None]) -> None:
    for name in ("a", "b"):
        build(tmp_path / name)
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


def test_detect_copies_to_the_host_once_not_per_detection(
    grounder: GroundingDino, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a GPU every float(tensor element) waits for the device: the detections' boxes and scores come from one
    copy of the model's output, whatever their number (here every query of two images)."""
    conversions = []
    to_float = torch.Tensor.__float__
    monkeypatch.setattr(torch.Tensor, "__float__", lambda t: conversions.append(1) or to_float(t))
    found = grounder.detect(
        [draw_shapes(seed=0), draw_shapes(seed=1)], ["red circle.", "cat."], box_threshold=0.0, text_threshold=0.0
    )
    assert sum(map(len, found)) == 2 * grounder.model.config.num_queries
    assert all(type(v) is float for d in found[0] for v in [*d["box"], d["score"]])
    assert conversions == []
