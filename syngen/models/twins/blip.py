"""Tiny twin of the BLIP captioner (``BlipForConditionalGeneration``)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

from syngen.models.twins.vocab import PUNCTUATION, WORDS, bert_vocab


def build_blip(path: Path) -> None:
    """A 2-layer, 32-wide BLIP captioner on 32-pixel images with a BERT tokenizer over the shared vocabulary."""
    vocab = bert_vocab()
    tokenizer = BertTokenizer(vocab=vocab, bos_token="[DEC]", additional_special_tokens=["[ENC]"])
    image_processor = BlipImageProcessor(size={"height": 32, "width": 32})
    size = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    config = BlipConfig(
        text_config=dict(
            **size,
            vocab_size=len(tokenizer),
            encoder_hidden_size=32,
            max_position_embeddings=128,
            bos_token_id=tokenizer.bos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            sep_token_id=tokenizer.sep_token_id,
        ),
        vision_config=dict(**size, image_size=32, patch_size=8, initializer_range=0.02),
        projection_dim=32,
    )
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(config).eval()
    # A random decoder would mostly pick BERT's [unused] ids: let it emit only words, punctuation and [SEP].
    allowed = [vocab[t] for t in WORDS + PUNCTUATION] + [tokenizer.sep_token_id]
    bias = model.text_decoder.cls.predictions.bias
    with torch.no_grad():
        mask = torch.ones_like(bias, dtype=torch.bool)
        mask[allowed] = False
        bias[mask] = -1e4
    model.save_pretrained(path)
    BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
