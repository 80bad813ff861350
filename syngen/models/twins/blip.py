"""Tiny twins of BLIP: the captioner (``BlipForConditionalGeneration``) and the AMC policy's image-text matching
model (``BlipForImageTextRetrieval``)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    BertTokenizer,
    BlipConfig,
    BlipForConditionalGeneration,
    BlipForImageTextRetrieval,
    BlipImageProcessor,
    BlipProcessor,
)

from syngen.models.twins.vocab import PUNCTUATION, WORDS, bert_vocab


def build_blip(path: Path) -> None:
    """A 2-layer, 32-wide BLIP captioner on 32-pixel images with a BERT tokenizer over the shared vocabulary."""
    processor, config = _tiny_blip(image_size=32, text_layers=2)
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


def build_blip_itm(path: Path) -> None:
    """A 32-wide BLIP ITM model on 64-pixel images (an 8x8 patch grid) with 4 text layers, so the default
    Grad-CAM layer (-4) is a cross-attention layer before the last."""
    processor, config = _tiny_blip(image_size=64, text_layers=4)
    torch.manual_seed(0)
    BlipForImageTextRetrieval(config).eval().save_pretrained(path)
    processor.save_pretrained(path)


def _tiny_blip(image_size: int, text_layers: int) -> tuple[BlipProcessor, BlipConfig]:
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
