"""LLaVA captioner (``LlavaForConditionalGeneration``, e.g. llava-hf/llava-1.5-7b-hf) for detailed descriptions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image
from transformers import (
    AutoProcessor,
    LlavaForConditionalGeneration,
)

from syngen.models.base import Adapter, timed


class LlavaCaptioner(Adapter):
    """Describes images with LLaVA: the prompt is the user's instruction, sent with the image via the chat template
    (the processor expands the template's image placeholder into the model's image tokens)."""

    model_class: Any = LlavaForConditionalGeneration  # what loads the checkpoint
    processor_class: Any = AutoProcessor  # what loads its processor

    def __init__(self, path: str | Path, **kwargs: Any):
        super().__init__(path, **kwargs)
        self.processor = self.processor_class.from_pretrained(self.path, trust_remote_code=self.trust_remote_code)
        self.processor.tokenizer.padding_side = "left"
        self.model = (
            self.model_class.from_pretrained(self.path, dtype=self.dtype, trust_remote_code=self.trust_remote_code)
            .to(self.device)
            .eval()
        )

    @timed
    def caption(self, images: list[Image.Image], prompt: str, max_new_tokens: int) -> list[str]:
        """One answer per image to the instruction ``prompt`` (greedy; only the generated text)."""
        conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        text = self.processor.apply_chat_template(conversation, add_generation_prompt=True)
        inputs = self.processor(
            images=images,
            text=[text] * len(images),
            padding=True,
            return_tensors="pt",
            **self.image_kwargs(self.processor),
        )
        inputs = inputs.to(self.device, self.dtype)
        out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        answers = self.processor.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        return [answer.strip() for answer in answers]
