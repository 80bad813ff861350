"""The LLaVA captioner on its tiny twin: classes, chat template with the image, batched greedy answers."""

from __future__ import annotations

import pytest

from syngen.models.llava import LlavaCaptioner
from syngen.models.loading import build_tiny
from syngen.models.twins.vocab import PUNCTUATION, WORDS
from tests.helpers import draw_shapes

IMAGES = [draw_shapes((128, 96), seed=0), draw_shapes((60, 150), seed=1)]
PROMPT = "Describe this image in detail."


@pytest.fixture(scope="module")
def llava() -> LlavaCaptioner:
    return LlavaCaptioner(build_tiny("captioner-llava"))


def test_twin_uses_the_real_checkpoint_classes(llava: LlavaCaptioner) -> None:
    # llava-hf/llava-1.5-7b-hf: a CLIP vision tower and a Llama language model
    assert type(llava.model).__name__ == "LlavaForConditionalGeneration"
    assert type(llava.processor).__name__ == "LlavaProcessor"
    assert type(llava.model.model.vision_tower).__name__ == "CLIPVisionModel"
    assert type(llava.model.model.language_model).__name__ == "LlamaModel"


def test_prompt_goes_through_the_chat_template(llava: LlavaCaptioner) -> None:
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]
    text = llava.processor.apply_chat_template(conversation, add_generation_prompt=True)
    assert text == f"USER: <image>\n{PROMPT} ASSISTANT:"
    ids = llava.processor(images=IMAGES[:1], text=[text], return_tensors="pt")["input_ids"][0].tolist()
    assert ids.count(llava.model.config.image_token_id) == 16  # (32 / 8) ** 2 patches
    assert llava.processor.tokenizer.padding_side == "left"


def test_caption_returns_only_the_answer(llava: LlavaCaptioner) -> None:
    captions = llava.caption(IMAGES, PROMPT, max_new_tokens=10)
    assert len(captions) == 2
    for caption in captions:
        words = caption.split()
        assert len(words) == 10 and set(words) <= set(WORDS + PUNCTUATION)
        assert "ASSISTANT" not in caption and "describe" not in words
    assert llava.caption(IMAGES[1:], PROMPT, max_new_tokens=10) == captions[1:]
