"""BLIP captioner (``BlipForConditionalGeneration``, e.g. Salesforce/blip-image-captioning-large)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import (
    BertTokenizer,
    BlipConfig,
    BlipForConditionalGeneration,
    BlipImageProcessor,
    BlipProcessor,
)

from syngen.models.base import Adapter, timed
from syngen.models.vocab import PUNCTUATION, WORDS, bert_vocab


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
        inputs = self.processor(images=images, text=text, return_tensors="pt").to(self.device, self.dtype)
        out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        # BLIP's generate drops the prompt's trailing [SEP] and returns [BOS] + prompt + continuation
        prefix = inputs["input_ids"].shape[1] - 1 if text else 1
        return [answer.strip() for answer in self.processor.batch_decode(out[:, prefix:], skip_special_tokens=True)]

    @classmethod
    def build_tiny(cls, variant: str, path: Path) -> None:
        """A 2-layer, 32-wide BLIP captioner on 32-pixel images with a BERT tokenizer over the shared vocabulary."""
        processor, config = tiny_blip(image_size=32, text_layers=2)
        torch.manual_seed(0)
        model = BlipForConditionalGeneration(config).eval()
        # A random decoder would mostly pick BERT's [unused] ids: let it emit only words, punctuation and [SEP].
        vocab = processor.tokenizer.get_vocab()
        allowed = [vocab[t] for t in WORDS + PUNCTUATION] + [processor.tokenizer.sep_token_id]
        bias = model.text_decoder.cls.predictions.bias
        with torch.no_grad():
            mask = torch.ones_like(bias, dtype=torch.bool)
            mask[allowed] = False
            bias[mask] = -1e4
        model.save_pretrained(path)
        processor.save_pretrained(path)


def tiny_blip(image_size: int, text_layers: int) -> tuple[BlipProcessor, BlipConfig]:
    """The processor and config of a 32-wide BLIP twin (2 vision layers, 8-pixel patches, ``text_layers`` text
    layers) on ``image_size``-pixel images, with a BERT tokenizer over the shared vocabulary."""
    tokenizer = BertTokenizer(vocab=bert_vocab(), bos_token="[DEC]", additional_special_tokens=["[ENC]"])
    image_processor = BlipImageProcessor(size={"height": image_size, "width": image_size})
    size = dict(hidden_size=32, intermediate_size=64, num_attention_heads=2)
    config = BlipConfig(
        text_config=dict(
            **size,
            num_hidden_layers=text_layers,
            vocab_size=len(tokenizer),
            encoder_hidden_size=32,
            max_position_embeddings=128,
            bos_token_id=tokenizer.bos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            sep_token_id=tokenizer.sep_token_id,
        ),
        vision_config=dict(**size, num_hidden_layers=2, image_size=image_size, patch_size=8, initializer_range=0.02),
        projection_dim=32,
    )
    return BlipProcessor(image_processor=image_processor, tokenizer=tokenizer), config
