"""Tiny twins of the grounders: transformers' GroundingDINO (``GroundingDinoForObjectDetection``) and
MM-Grounding-DINO (``MMGroundingDinoForObjectDetection``), of the same sizes and processor."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    BertConfig,
    BertTokenizer,
    GroundingDinoConfig,
    GroundingDinoForObjectDetection,
    GroundingDinoProcessor,
    MMGroundingDinoConfig,
    MMGroundingDinoForObjectDetection,
    PretrainedConfig,
    PreTrainedModel,
    SwinConfig,
)
from transformers.models.grounding_dino import GroundingDinoImageProcessorPil

from syngen.models.twins.vocab import bert_vocab


def build_grounding_dino(path: Path) -> None:
    """A GroundingDINO with a tiny Swin backbone and tiny BERT, and a processor for ~128-pixel inputs."""
    _build(path, GroundingDinoConfig, GroundingDinoForObjectDetection)


def build_mm_grounding_dino(path: Path) -> None:
    """An MM-Grounding-DINO of the GroundingDINO twin's sizes, with the same processor (as the real checkpoints
    use GroundingDinoProcessor).

    Its contrastive heads' learned bias starts at the focal-loss prior (-4.6), which leaves an untrained model's
    scores all below 0.12; at 0 they spread over 0.3-0.96 as the GroundingDINO twin's do, so the thresholds of a
    recipe keep some detections and drop others.
    """
    _build(path, MMGroundingDinoConfig, MMGroundingDinoForObjectDetection, class_bias=0.0)


def _build(
    path: Path,
    config_class: type[PretrainedConfig],
    model_class: type[PreTrainedModel],
    class_bias: float | None = None,
) -> None:
    """Save a tiny ``model_class`` (of ``config_class``) and its processor to ``path``; ``class_bias``: the value
    of the contrastive heads' scalar bias (MM-Grounding-DINO's), where given.

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
    config = config_class(
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
        model = model_class(config).eval()
    if class_bias is not None:
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if "class_embed" in name and name.endswith(".bias") and parameter.ndim == 0:
                    parameter.fill_(class_bias)
    model.save_pretrained(path)
    # Below ~128 pixels the last feature level is 1x1 and GroupNorm fails.
    image_processor = GroundingDinoImageProcessorPil(size={"shortest_edge": 128, "longest_edge": 192})
    tokenizer = BertTokenizer(vocab=bert_vocab())
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
