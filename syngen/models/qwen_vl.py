"""Qwen2.5-VL captioner (``Qwen2_5_VLForConditionalGeneration``, e.g. Qwen/Qwen2.5-VL-7B-Instruct).

The call is LLaVA's: one user message of an image and the instruction through the checkpoint's chat template
(``<|vision_start|><|image_pad|><|vision_end|>`` for the image), which the processor expands into one
``<|image_pad|>`` per merged image patch and pairs with ``pixel_values`` and ``image_grid_thw``.
"""

from __future__ import annotations

from typing import Any

from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

from syngen.models.llava import LlavaCaptioner


class ImageQwenVLProcessor(Qwen2_5_VLProcessor):
    """``Qwen2_5_VLProcessor`` without its video processor: transformers' video processors need torchvision,
    which syngen does not install, and a captioner reads no video. Chat template, image-token expansion and
    image preprocessing are Qwen2_5_VLProcessor's own."""

    def __init__(
        self, image_processor: Any = None, tokenizer: Any = None, chat_template: str | None = None, **kwargs: Any
    ):
        self.image_token = getattr(tokenizer, "image_token", "<|image_pad|>")
        self.video_token = getattr(tokenizer, "video_token", "<|video_pad|>")
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        super(Qwen2_5_VLProcessor, self).__init__(image_processor, tokenizer, chat_template=chat_template, **kwargs)


class QwenVLCaptioner(LlavaCaptioner):
    """Describes images with Qwen2.5-VL (greedy; only the generated text)."""

    model_class: Any = Qwen2_5_VLForConditionalGeneration
    processor_class: Any = ImageQwenVLProcessor
