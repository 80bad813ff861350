"""Grounder backends: transformers' GroundingDINO (real checkpoint: IDEA-Research/grounding-dino-tiny) and
MM-Grounding-DINO (real checkpoints: openmmlab-community/mm_grounding_dino_*), which share a processor, a BERT
tokenizer and the token-span phrase mapping."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from PIL import Image
from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor, MMGroundingDinoForObjectDetection

from syngen.models.base import Adapter, timed
from syngen.models.roles import Detection


class GroundingDino(Adapter):
    """Open-vocabulary detection: one text prompt (``"a. b. c."``) per image, boxes in pixels with text labels."""

    model_class: Any = AutoModelForZeroShotObjectDetection  # what loads the checkpoint

    def __init__(self, path: str | Path, device: str = "cpu", dtype: str = "float32", trust_remote_code: bool = False):
        super().__init__(path, device, dtype, trust_remote_code)
        self.processor = AutoProcessor.from_pretrained(self.path, trust_remote_code=trust_remote_code)
        self.model = (
            self.model_class.from_pretrained(self.path, dtype=self.dtype, trust_remote_code=trust_remote_code)
            .to(self.device)
            .eval()
        )
        tokenizer = self.processor.tokenizer
        self._special = set(tokenizer.all_special_tokens)
        # GroundingDINO separates a prompt's phrases at "." and "?" and reads up to [SEP] (padding follows it)
        self._delimiters = set(tokenizer.convert_tokens_to_ids([".", "?"]))
        self._ends = {tokenizer.sep_token_id, tokenizer.pad_token_id}

    def count_tokens(self, text: str) -> int:
        """Number of text tokens the processor makes of ``text``, [CLS] and [SEP] included."""
        return len(self.processor.tokenizer(text)["input_ids"])

    @timed
    def detect(
        self, images: list[Image.Image], prompts: list[str], box_threshold: float, text_threshold: float
    ) -> list[list[Detection]]:
        """Detections per image for its prompt, in one model call: ``{"phrase", "label", "box" (xyxy pixels),
        "score"}``.

        ``phrase`` is the index of the prompt's phrase (its "."- or "?"-separated parts, in order, as the model
        itself splits them) whose tokens hold most of the detection's token scores above ``text_threshold``, or
        None when no token of any phrase is above it. ``label`` is the text of the prompt tokens above
        ``text_threshold`` (special tokens removed), for information only: often part of a phrase (its head noun),
        sometimes words of two phrases, ``[UNK]`` for words outside the vocabulary.
        """
        inputs = self.processor(
            images=images, text=prompts, padding=True, return_tensors="pt", **self.image_kwargs(self.processor)
        )
        inputs = inputs.to(self.device, self.dtype)
        outputs = self.model(**inputs)
        # One copy to the host per call: the post-processing works query by query and token by token (small ops
        # that would each wait for the GPU).
        host = SimpleNamespace(logits=outputs.logits.float().cpu(), pred_boxes=outputs.pred_boxes.float().cpu())
        input_ids = inputs["input_ids"].cpu()
        results = self.processor.post_process_grounded_object_detection(
            host,
            input_ids,
            threshold=box_threshold,
            text_threshold=text_threshold,
            target_sizes=[(image.height, image.width) for image in images],
        )
        probs = torch.sigmoid(host.logits)  # as the post-processing computes them: (images, queries, 256)
        found: list[list[Detection]] = []
        for result, prob, ids in zip(results, probs, input_ids, strict=True):
            kept = prob[prob.max(-1).values > box_threshold]  # the post-processing's detections, in order
            phrases = self._phrase_masses(kept, ids, text_threshold)
            found.append(
                [
                    {"phrase": phrase, "label": self._strip_special(label), "box": box, "score": score}
                    for phrase, label, box, score in zip(
                        phrases, result["text_labels"], result["boxes"].tolist(), result["scores"].tolist(), strict=True
                    )
                ]
            )
        return found

    def _phrase_masses(self, probs: torch.Tensor, input_ids: torch.Tensor, text_threshold: float) -> list[int | None]:
        """For each detection's token scores (detections, 256), the phrase holding most of its scores above
        ``text_threshold``, or None."""
        phrase_of = torch.full((probs.shape[-1],), -1, dtype=torch.long, device=probs.device)
        phrase = 0
        for position, token in enumerate(input_ids.tolist()[1:], start=1):  # [CLS] first
            if token in self._ends or position >= probs.shape[-1]:
                break
            if token in self._delimiters:
                phrase += 1
            else:
                phrase_of[position] = phrase
        mass = torch.where(probs > text_threshold, probs, 0.0)
        per_phrase = torch.zeros((len(probs), phrase + 1), device=probs.device)
        inside = phrase_of >= 0
        per_phrase.index_add_(1, phrase_of[inside], mass[:, inside])
        best = per_phrase.max(-1)
        return [int(i) if m > 0 else None for m, i in zip(best.values.tolist(), best.indices.tolist(), strict=True)]

    def _strip_special(self, label: str) -> str:
        return " ".join(word for word in label.split() if word not in self._special)


class MMGroundingDino(GroundingDino):
    """MM-Grounding-DINO (or an LLMDet checkpoint, which has its classes): GroundingDINO's interface and phrase
    mapping, loaded as ``MMGroundingDinoForObjectDetection``."""

    model_class = MMGroundingDinoForObjectDetection
