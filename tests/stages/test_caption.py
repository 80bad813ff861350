"""The caption stage: prompt files, BLIP and LLaVA twins, empty captions as failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from syngen.devtools.fakes import FakeCaptioner
from syngen.models.loading import load
from syngen.refs import ModelRef
from syngen.sample import Failure, image_bytes
from syngen.stages.base import Context
from syngen.stages.caption import Caption, CaptionConfig
from tests.helpers import draw_shapes

SAMPLES = [{"id": f"s{i}", "image": image_bytes(draw_shapes(seed=i))} for i in range(3)]


def test_default_prompt_is_the_bundled_blip_prefix(tmp_path: Path) -> None:
    assert Caption(CaptionConfig(), Context(recipe_dir=tmp_path)).prompt == "a picture of"


def test_prompt_file_resolves_against_the_recipe_folder(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("  Describe it.\n")
    fake = FakeCaptioner(["a cat", "a dog", "a car"])
    stage = Caption(CaptionConfig(prompt="mine.txt"), Context(recipe_dir=tmp_path))
    assert stage.process(SAMPLES, fake) == [{"caption": "a cat"}, {"caption": "a dog"}, {"caption": "a car"}]
    assert fake.calls == [("Describe it.", [(128, 96)] * 3)]


def test_empty_caption_is_a_failure(tmp_path: Path) -> None:
    stage = Caption(CaptionConfig(), Context(recipe_dir=tmp_path))
    results = stage.process(SAMPLES, FakeCaptioner(["a cat", "", " \n "]))
    assert results[0] == {"caption": "a cat"}
    assert [r.kind for r in results[1:] if isinstance(r, Failure)] == ["empty_caption", "empty_caption"]


@pytest.mark.parametrize(
    ("model", "prompt"),
    [("tiny:captioner-blip", "prompts/caption_blip.txt"), ("tiny:captioner-llava", "prompts/caption_detailed.txt")],
    ids=["blip", "llava"],
)
def test_twins_caption_every_image(tmp_path: Path, model: str, prompt: str) -> None:
    config = CaptionConfig(model=ModelRef(id=model), prompt=prompt, max_new_tokens=8)
    stage = Caption(config, Context(recipe_dir=tmp_path))
    captioner, _ = load(config.model, Caption.default_backend, "cpu", "float32")
    results = stage.process(SAMPLES, captioner)
    assert len(results) == 3 and all(isinstance(r, dict) and r["caption"].strip() for r in results)
    assert captioner.model_seconds > 0
