"""SAM 3 on its tiny twin: the twin itself, and the ``sam3`` grounder-with-masks adapter."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, Sam3Model

from syngen.models.loading import build_tiny
from tests.helpers import draw_shapes


@pytest.fixture(scope="module")
def twin() -> Path:
    return build_tiny("sam3")


def pixels(twin: Path, seed: int) -> torch.Tensor:
    """The twin's input for a drawn picture, normalised as its preprocessor config says."""
    config = json.loads((twin / "preprocessor_config.json").read_text())
    size = config["size"]["height"], config["size"]["width"]
    image = np.asarray(draw_shapes((size[1], size[0]), seed=seed), dtype=np.float32) / 255
    mean, std = np.array(config["image_mean"]), np.array(config["image_std"])
    return torch.from_numpy(((image - mean) / std).transpose(2, 0, 1)[None]).float()


def test_twin_outputs_every_query_and_sees_the_image(twin: Path) -> None:
    model = Sam3Model.from_pretrained(twin).eval()
    text = AutoTokenizer.from_pretrained(twin)(["red circle"], padding="max_length", max_length=32, return_tensors="pt")
    with torch.no_grad():
        first, second = (model(pixel_values=pixels(twin, seed), **text) for seed in (0, 1))
    assert first.pred_masks.shape[:2] == first.pred_boxes.shape[:2] == first.pred_logits.shape == (1, 20)
    assert first.presence_logits.shape == (1, 1)
    # The vision tower sees the image: a different picture changes the masks by more than their own scale / 10.
    change = (first.pred_masks - second.pred_masks).abs().mean()
    assert change > first.pred_masks.abs().mean() / 10
