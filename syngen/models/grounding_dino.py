"""Grounder backend: transformers' GroundingDINO (real checkpoint: IDEA-Research/grounding-dino-tiny)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from transformers import (
    AutoModelForZeroShotObjectDetection,
    AutoProcessor,
)

from syngen.models.base import Adapter, timed


class GroundingDino(Adapter):
    """Open-vocabulary detection: one text prompt (``"a. b. c."``) per image, boxes in pixels with text labels."""

    def __init__(self, path: str | Path, device: str = "cpu", dtype: str = "float32", trust_remote_code: bool = False):
        super().__init__(path, device, dtype, trust_remote_code)
        self.processor = AutoProcessor.from_pretrained(self.path, trust_remote_code=trust_remote_code)
        self.model = (
            AutoModelForZeroShotObjectDetection.from_pretrained(
                self.path, dtype=self.dtype, trust_remote_code=trust_remote_code
            )
            .to(self.device)
            .eval()
        )
        self._special = set(self.processor.tokenizer.all_special_tokens)

    def count_tokens(self, text: str) -> int:
        """Number of text tokens the processor makes of ``text``, [CLS] and [SEP] included."""
        return len(self.processor.tokenizer(text)["input_ids"])

    @timed
    def detect(
        self, images: list[Image.Image], prompts: list[str], box_threshold: float, text_threshold: float
    ) -> list[list[dict]]:
        """Detections per image for its prompt: ``{"label", "box" (xyxy pixels), "score"}``, in one model call.

        ``label`` is the text of the prompt tokens above ``text_threshold`` (special tokens removed): usually one
        phrase of the prompt, sometimes the words of several.
        """
        inputs = self.processor(images=images, text=prompts, padding=True, return_tensors="pt")
        inputs = inputs.to(self.device, self.dtype)
        outputs = self.model(**inputs)
        results = self.processor.post_process_grounded_object_detection(
            outputs,
            inputs["input_ids"],
            threshold=box_threshold,
            text_threshold=text_threshold,
            target_sizes=[(image.height, image.width) for image in images],
        )
        return [
            [
                {"label": self._strip_special(label), "box": [float(v) for v in box], "score": float(score)}
                for label, box, score in zip(result["text_labels"], result["boxes"].float(), result["scores"].float())
            ]
            for result in results
        ]

    def _strip_special(self, label: str) -> str:
        return " ".join(word for word in label.split() if word not in self._special)
