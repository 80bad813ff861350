"""BLIP image-text matching (``BlipForImageTextRetrieval``, e.g. Salesforce/blip-itm-base-coco), the AMC policy.

Loaded with eager attention so the text encoder returns its cross-attention maps (Grad-CAM needs them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import BlipForImageTextRetrieval, BlipProcessor

from syngen.models.base import Adapter
from syngen.models.blip import tiny_blip


class BlipItm(Adapter):
    """Holds ``model`` (``BlipForImageTextRetrieval``, eager attention) and ``processor``; the trainer and
    ``syngen eval pointing`` call them directly (they need gradients, so there is no inference-mode batch call)."""

    def __init__(self, path: str | Path, **kwargs: Any):
        super().__init__(path, **kwargs)
        self.processor = BlipProcessor.from_pretrained(self.path, trust_remote_code=self.trust_remote_code)
        self.model = BlipForImageTextRetrieval.from_pretrained(
            self.path, dtype=self.dtype, attn_implementation="eager", trust_remote_code=self.trust_remote_code
        ).to(self.device)

    @classmethod
    def build_tiny(cls, variant: str, path: Path) -> None:
        """A 32-wide BLIP ITM model on 64-pixel images (an 8x8 patch grid) with 4 text layers, so the default
        Grad-CAM layer (-4) is a cross-attention layer before the last."""
        processor, config = tiny_blip(image_size=64, text_layers=4)
        torch.manual_seed(0)
        BlipForImageTextRetrieval(config).eval().save_pretrained(path)
        processor.save_pretrained(path)
