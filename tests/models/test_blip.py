"""The BLIP captioner on its tiny twin: classes, batched captions, prompt prefix left out, vocabulary words."""

from __future__ import annotations

import re

import pytest

from syngen.models.blip import BlipCaptioner
from syngen.models.loading import build_tiny
from syngen.models.twins.vocab import PUNCTUATION, WORDS
from tests.helpers import draw_shapes

IMAGES = [draw_shapes((128, 96), seed=0), draw_shapes((60, 150), seed=1)]


@pytest.fixture(scope="module")
def blip() -> BlipCaptioner:
    return BlipCaptioner(build_tiny("captioner-blip"))


def test_twin_uses_the_real_checkpoint_classes(blip: BlipCaptioner) -> None:
    # Salesforce/blip-image-captioning-base and -large
    assert type(blip.model).__name__ == "BlipForConditionalGeneration"
    assert type(blip.processor).__name__ == "BlipProcessor"
    assert type(blip.processor.tokenizer).__name__ == "BertTokenizer"
    assert blip.model.config.text_config.bos_token_id == blip.processor.tokenizer.convert_tokens_to_ids("[DEC]")


@pytest.mark.parametrize("prompt", ["", "a picture of"], ids=["unconditional", "prefix"])
def test_caption_is_the_continuation_of_the_prompt(blip: BlipCaptioner, prompt: str) -> None:
    captions = blip.caption(IMAGES, prompt, max_new_tokens=12)
    assert len(captions) == 2 and all(isinstance(c, str) and c for c in captions)
    for image, caption in zip(IMAGES, captions, strict=True):
        assert set(re.findall(r"\w+|\S", caption)) <= set(WORDS + PUNCTUATION)  # BERT decoding joins "on ."
        # the full generated text, decoded independently, is the prompt followed by the caption
        inputs = blip.processor(images=[image], text=[prompt] if prompt else None, return_tensors="pt")
        full = blip.processor.decode(blip.model.generate(**inputs, max_new_tokens=12)[0], skip_special_tokens=True)
        assert " ".join(full.split()) == " ".join(f"{prompt} {caption}".split())


def test_batch_answer_equals_single_answer(blip: BlipCaptioner) -> None:
    assert blip.caption(IMAGES, "a picture of", 12)[1] == blip.caption(IMAGES[1:], "a picture of", 12)[0]
    assert blip.model_seconds > 0
