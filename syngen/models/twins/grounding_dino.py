"""Tiny twin of the grounder: transformers' GroundingDINO (``GroundingDinoForObjectDetection``)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    BertConfig,
    BertTokenizer,
    GroundingDinoConfig,
    GroundingDinoForObjectDetection,
    GroundingDinoProcessor,
    SwinConfig,
)
from transformers.models.grounding_dino import GroundingDinoImageProcessorPil

from syngen.models.twins.vocab import bert_vocab


def build_grounding_dino(path: Path) -> None:
    """A GroundingDINO with a tiny Swin backbone and tiny BERT, and a processor for ~128-pixel inputs.

    The tokenizer keeps bert-base-uncased's ids for [CLS], [SEP], "." and "?", which the model hard-codes to
    split a prompt into phrases.
    """
    backbone = SwinConfig(
        image_size=128,
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 1, 1],
        window_size=4,
        out_features=["stage2", "stage3", "stage4"],
    )
    text = BertConfig(
        vocab_size=len(bert_vocab()),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    config = GroundingDinoConfig(
        backbone_config=backbone,
        text_config=text,
        num_queries=30,
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,  # 1 fails at construction (tie-weights)
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_n_points=2,
        decoder_n_points=2,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = GroundingDinoForObjectDetection(config).eval()
    model.save_pretrained(path)
    # Below ~128 pixels the last feature level is 1x1 and GroupNorm fails.
    image_processor = GroundingDinoImageProcessorPil(size={"shortest_edge": 128, "longest_edge": 192})
    tokenizer = BertTokenizer(vocab=bert_vocab())
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
