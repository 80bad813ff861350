"""BLIP image-text matching (``BlipForImageTextRetrieval``, e.g. Salesforce/blip-itm-base-coco), the AMC policy.

Loaded with eager attention so the text encoder returns its cross-attention maps (Grad-CAM needs them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import BlipForImageTextRetrieval, BlipProcessor

from syngen.models.base import Adapter


class BlipItm(Adapter):
    """Holds ``model`` (``BlipForImageTextRetrieval``, eager attention) and ``processor``; the trainer and
    ``syngen eval pointing`` call them directly (they need gradients, so there is no inference-mode batch call)."""

    def __init__(self, path: str | Path, **kwargs: Any):
        super().__init__(path, **kwargs)
        self.processor = BlipProcessor.from_pretrained(self.path, trust_remote_code=self.trust_remote_code)
        self.model = BlipForImageTextRetrieval.from_pretrained(
            self.path, dtype=self.dtype, attn_implementation="eager", trust_remote_code=self.trust_remote_code
        ).to(self.device)
