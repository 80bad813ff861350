"""Tiny twin of the trainer's CLIP text encoder (``CLIPTextModel``, real checkpoint openai/clip-vit-base-patch32)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from syngen.models.twins.vocab import clip_bpe


def build_clip_text(path: Path) -> None:
    """A 2-layer, 32-wide CLIP text model with a BPE tokenizer over the shared vocabulary."""
    vocab, merges = clip_bpe()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=32)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=32,
        projection_dim=32,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = CLIPTextModel(config).eval()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
