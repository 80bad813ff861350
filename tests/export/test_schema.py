"""The export schema is built from what the stages that ran declare; a new stage publishes with no other edit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pytest
import yaml
from datasets import Value
from huggingface_hub import DatasetCard

from syngen import stages as stage_registry
from syngen.executors.local import run
from syngen.export import Column, schemas
from syngen.export.rows import project
from syngen.export.schema import build
from syngen.recipe import load_recipe
from syngen.stages import stage_class
from tests.helpers import draw_shapes

TOY_STAGE = '''
"""A toy stage: the mean grey level of each image."""

import numpy as np
from datasets import Value

from syngen.export.schema import Column
from syngen.sample import load_image
from syngen.stages.base import Stage


class Brightness(Stage):
    name = "brightness"
    needs = ("image",)
    adds = ("brightness",)
    publishes = {"brightness": Column(Value("float32"), "mean grey level of the image, 0..255")}

    def process(self, samples, model=None):
        return [{"brightness": float(np.asarray(load_image(s).convert("L")).mean())} for s in samples]
'''


def test_a_new_stage_publishes_its_column_with_its_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "toy_brightness.py").write_text(TOY_STAGE)  # its own file ...
    monkeypatch.syspath_prepend(str(tmp_path / "code"))
    monkeypatch.setitem(stage_registry.STAGES, "brightness", "toy_brightness:Brightness")  # ... and its registry line
    (tmp_path / "seeds").mkdir()
    for i in range(3):
        draw_shapes(seed=i).save(tmp_path / "seeds" / f"{i}.png")
    recipe = {"name": "toy", "source": {"kind": "images", "path": "seeds"}, "stages": {"brightness": {}}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    run(load_recipe(tmp_path / "r.yaml"), tmp_path / "out", progress=False)

    grounding = datasets.load_dataset(str(tmp_path / "out" / "dataset"), "grounding", split="train")
    assert grounding.features["brightness"] == Value("float32")
    expected = [np.asarray(draw_shapes(seed=i).convert("L")).mean() for i in range(3)]
    assert grounding["brightness"] == pytest.approx(expected, abs=1e-3)
    assert list(grounding.features) == ["id", "image", "width", "height", "brightness", "overlay", "provenance"]
    card = DatasetCard.load(tmp_path / "out" / "dataset" / "README.md").text
    assert "| `brightness` | float32 | brightness | mean grey level of the image, 0..255 |" in card


def configs(**stages: dict[str, Any]) -> dict[str, Any]:
    """Stage configs as a recipe holds them, from settings per stage name."""
    return {name: stage_class(name).Config(**settings) for name, settings in stages.items()}


IMAGES = {"kind": "images", "path": "seeds"}
REGIONS_FULL = ["phrase", "box", "box_score", "label", "mask", "mask_score", "views"]
ALL_STAGES = dict.fromkeys(["caption", "synthesize", "phrases", "ground", "segment", "negatives", "views"], {})


@pytest.mark.parametrize(
    ("stages", "columns", "region_fields"),
    [
        pytest.param(
            {"source": IMAGES, **ALL_STAGES},
            ["id", "image", "width", "height", "caption", "phrases", "regions", "overlay", "provenance"],
            REGIONS_FULL,
            id="quickstart-stages",
        ),
        pytest.param(
            {"source": IMAGES, "caption": {}, "phrases": {}, "ground": {}, "segment": {}},
            ["id", "image", "width", "height", "caption", "phrases", "regions", "overlay", "provenance"],
            ["phrase", "box", "box_score", "label", "mask", "mask_score"],
            id="no-views",
        ),
        pytest.param(
            {"source": {"kind": "captions", "path": "c.txt"}, "phrases": {}},
            ["id", "caption", "phrases", "provenance"],
            None,
            id="captions-only-no-image-no-overlay",
        ),
        pytest.param(
            {"source": {"kind": "dataset", "path": "d", "caption_column": "text"}},
            ["id", "image", "width", "height", "caption", "overlay", "provenance"],
            None,
            id="dataset-with-captions",
        ),
    ],
)
def test_grounding_columns_follow_the_stages_that_ran(
    stages: dict, columns: list[str], region_fields: list[str] | None
) -> None:
    features = schemas(configs(**stages))["grounding"].features
    assert list(features) == columns
    if region_fields is not None:
        assert list(features["regions"].feature) == region_fields


def test_every_stage_schema_is_the_published_one() -> None:
    """With no stage list (every registered stage), the schema is the quickstart's, as exported before."""
    assert schemas()["grounding"].features == schemas(configs(source=IMAGES, **ALL_STAGES))["grounding"].features


def test_two_stages_declaring_one_column_differently_fail() -> None:
    declared = [("a", {"n": Column(Value("int32"), "")}), ("b", {"n": Column(Value("string"), "")})]
    with pytest.raises(ValueError, match="'n' is declared as"):
        build(declared)


def test_rows_keep_declared_fields_only() -> None:
    features = schemas()["grounding"].features
    region = {"phrase": "a", "box": [1.0, 2.0, 3.0, 4.0], "box_score": 0.5, "negatives": [{"kind": "x"}]}
    assert project([region], features["regions"]) == [
        {
            "phrase": "a",
            "box": [1.0, 2.0, 3.0, 4.0],
            "box_score": 0.5,
            "label": None,
            "mask": None,
            "mask_score": None,
            "views": [],
        }
    ]
    assert project(None, features["phrases"]) == [] and project(None, features["caption"]) is None
    assert project(b"png", features["image"]) == {"bytes": b"png", "path": None}
