"""The Qwen2.5-VL captioner on its tiny twin: classes, the checkpoint's chat template with the image expanded into
its image tokens by the processor, batched greedy answers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from syngen.models.loading import build_tiny
from syngen.models.qwen_vl import QwenVLCaptioner
from syngen.models.twins.qwen_vl import build_qwen_vl
from syngen.models.twins.vocab import PUNCTUATION, WORDS
from tests.helpers import draw_shapes

IMAGES = [draw_shapes((128, 96), seed=0), draw_shapes((60, 150), seed=1)]
PROMPT = "Describe this image in detail."


@pytest.fixture(scope="module")
def qwen() -> QwenVLCaptioner:
    return QwenVLCaptioner(build_tiny("captioner-qwen2.5-vl"))


def test_twin_uses_the_real_checkpoint_classes(qwen: QwenVLCaptioner) -> None:
    # Qwen/Qwen2.5-VL-*-Instruct: its vision transformer and Qwen2.5-VL text model, a Qwen2 byte-level tokenizer
    assert type(qwen.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(qwen.model.model.visual).__name__ == "Qwen2_5_VisionTransformerPretrainedModel"
    assert type(qwen.processor.tokenizer).__name__ == "Qwen2Tokenizer"
    assert type(qwen.processor.image_processor).__name__.startswith("Qwen2VLImageProcessor")


def test_prompt_goes_through_the_chat_template_and_the_image_becomes_its_tokens(qwen: QwenVLCaptioner) -> None:
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]
    text = qwen.processor.apply_chat_template(conversation, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        f"<|vision_start|><|image_pad|><|vision_end|>{PROMPT}<|im_end|>\n<|im_start|>assistant\n"
    )
    for image in IMAGES:
        inputs = qwen.processor(images=[image], text=[text], return_tensors="pt")
        [grid] = inputs["image_grid_thw"].tolist()  # (t, h, w) in 14-pixel patches, merged 2x2 into one token
        tokens = inputs["input_ids"][0].tolist().count(qwen.model.config.image_token_id)
        assert tokens == grid[0] * grid[1] * grid[2] // 4 > 1
    assert qwen.processor.tokenizer.padding_side == "left"


def test_caption_returns_only_the_answer_and_batches(qwen: QwenVLCaptioner) -> None:
    captions = qwen.caption(IMAGES, PROMPT, max_new_tokens=10)
    assert len(captions) == 2
    for caption in captions:
        words = caption.split()
        assert len(words) == 10 and set(words) <= set(WORDS + PUNCTUATION)
        assert "assistant" not in words and "describe" not in words
    assert qwen.caption(IMAGES[1:], PROMPT, max_new_tokens=10) == captions[1:]


def test_tiny_twin_is_deterministic(tmp_path: Path) -> None:
    for name in ("a", "b"):
        build_qwen_vl(tmp_path / name)
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


def test_loads_the_hub_layout_without_torchvision(qwen: QwenVLCaptioner, tmp_path: Path) -> None:
    # Qwen/Qwen2.5-VL-*-Instruct ship preprocessor_config.json naming the torchvision-backed image processor and no
    # processor_config.json: the processor loads with the PIL image processor and no video processor
    folder = tmp_path / "qwen"
    shutil.copytree(build_tiny("captioner-qwen2.5-vl"), folder)
    settings = json.loads((folder / "processor_config.json").read_text())["image_processor"]
    settings["image_processor_type"] = "Qwen2VLImageProcessor"
    (folder / "preprocessor_config.json").write_text(json.dumps(settings))
    (folder / "processor_config.json").unlink()
    hub = QwenVLCaptioner(folder)
    assert type(hub.processor.image_processor).__name__ == "Qwen2VLImageProcessorPil"
    assert getattr(hub.processor, "video_processor", None) is None
    assert hub.caption(IMAGES, PROMPT, max_new_tokens=6) == qwen.caption(IMAGES, PROMPT, max_new_tokens=6)
