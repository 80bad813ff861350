"""BLIP captioner (``BlipForConditionalGeneration``, e.g. Salesforce/blip-image-captioning-large)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image
from transformers import (
    BlipForConditionalGeneration,
    BlipProcessor,
)

from syngen.models.base import Adapter, timed


class BlipCaptioner(Adapter):
    """Captions images with BLIP; the prompt is BLIP's conditional text prefix and is left out of the caption."""

    def __init__(self, path: str | Path, **kwargs: Any):
        super().__init__(path, **kwargs)
        self.processor = BlipProcessor.from_pretrained(self.path, trust_remote_code=self.trust_remote_code)
        self.model = (
            BlipForConditionalGeneration.from_pretrained(
                self.path, dtype=self.dtype, trust_remote_code=self.trust_remote_code
            )
            .to(self.device)
            .eval()
        )

    @timed
    def caption(self, images: list[Image.Image], prompt: str, max_new_tokens: int) -> list[str]:
        """One caption per image: the text BLIP generates after ``prompt`` (which may be empty)."""
        text = [prompt] * len(images) if prompt.strip() else None
        inputs = self.processor(images=images, text=text, return_tensors="pt", **self.image_kwargs(self.processor))
        inputs = inputs.to(self.device, self.dtype)
        out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        # BLIP's generate drops the prompt's trailing [SEP] and returns [BOS] + prompt + continuation
        prefix = inputs["input_ids"].shape[1] - 1 if text else 1
        return [answer.strip() for answer in self.processor.batch_decode(out[:, prefix:], skip_special_tokens=True)]
