"""Text encoder for the trainer's text-promptable SAM: transformers' ``CLIPTextModel`` (real checkpoint:
openai/clip-vit-base-patch32). The policy loads the model itself; this backend provides its tiny twin."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from syngen.models.base import Adapter
from syngen.models.vocab import clip_bpe


class ClipText(Adapter):
    """CLIP's text tower and tokenizer (used through :mod:`syngen.train.policy`)."""

    @classmethod
    def build_tiny(cls, variant: str, path: Path) -> None:
        """A 2-layer, 32-wide CLIP text model with a BPE tokenizer over the shared vocabulary."""
        if variant != "clip":
            raise ValueError(f"unknown CLIP text twin {variant!r}")
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
