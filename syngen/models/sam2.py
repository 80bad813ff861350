"""Segmenter backend: transformers' Sam2Model (real checkpoints: facebook/sam2.1-hiera-*), with the embedding cache
every SAM backend shares.

Images are prepared as transformers' ``Sam2ImageProcessor`` prepares them (resized to the square input, rescaled,
normalised with the checkpoint's mean and std) and masks post-processed as ``Sam2Processor.post_process_masks``
does (bilinear to the original size, logits above 0), here with PIL and torch: transformers' SAM 2 image processor
needs torchvision, which syngen does not install.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from PIL import Image
from transformers import Sam2Model

from syngen.models.sam_hf import CachedSegmenter, Embedding, Prompts, decode_levels

PREPROCESSOR_FILE = "preprocessor_config.json"
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def preprocessor_config(side: int) -> dict[str, Any]:
    """The ``preprocessor_config.json`` of a SAM 2 checkpoint whose square input is ``side`` pixels (the keys of
    the facebook/sam2.1 checkpoints this backend reads)."""
    return {
        "image_processor_type": "Sam2ImageProcessorFast",
        "processor_class": "Sam2Processor",
        "size": {"height": side, "width": side},
        "mask_size": {"height": side // 4, "width": side // 4},
        "do_resize": True,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": IMAGENET_MEAN,
        "image_std": IMAGENET_STD,
        "do_convert_rgb": True,
    }


def image_processor_config(folder: Path) -> dict[str, Any]:
    """A SAM 2 checkpoint's image-processor settings: its ``preprocessor_config.json`` (the facebook/sam2.1
    checkpoints), else the ``image_processor`` entry of its ``processor_config.json`` (where transformers 5 saves a
    whole processor). Raises FileNotFoundError naming the folder when it has neither."""
    if (folder / PREPROCESSOR_FILE).is_file():
        config: dict[str, Any] = json.loads((folder / PREPROCESSOR_FILE).read_text())
        return config
    processor = folder / "processor_config.json"
    if processor.is_file() and "image_processor" in (nested := json.loads(processor.read_text())):
        return dict(nested["image_processor"])
    raise FileNotFoundError(f"{folder} has no {PREPROCESSOR_FILE} (nor a processor_config.json with image_processor)")


@dataclass
class Sam2Embedding(Embedding):
    """One image's SAM 2 embedding: ``features`` its coarsest feature level (1, C, h, w), ``high_res`` the two
    finer ones the mask decoder also reads, finest first."""

    high_res: list[torch.Tensor]


class HFSam2(CachedSegmenter):
    """SAM 2 through transformers' ``Sam2Model``: the embedding holds the image's three feature levels (the
    decoder reads the two high-resolution ones too)."""

    def __init__(self, path: str | Path, device: str = "cpu", dtype: str = "float32", trust_remote_code: bool = False):
        super().__init__(path, device, dtype, trust_remote_code)
        prep = image_processor_config(Path(self.path))
        self.side = (int(prep["size"]["height"]), int(prep["size"]["width"]))
        self.rescale = float(prep.get("rescale_factor", 1 / 255))
        shape = (1, 3, 1, 1)
        self.mean = torch.tensor(prep.get("image_mean", IMAGENET_MEAN), device=self.device).view(shape)
        self.std = torch.tensor(prep.get("image_std", IMAGENET_STD), device=self.device).view(shape)
        self.model = Sam2Model.from_pretrained(self.path, dtype=self.dtype, trust_remote_code=trust_remote_code)
        self.model.to(self.device).eval()

    def _encode(self, images: list[Image.Image]) -> list[Embedding]:
        height, width = self.side
        pixels = np.stack(
            [np.asarray(im.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)) for im in images]
        )
        batch = torch.as_tensor(pixels, device=self.device).permute(0, 3, 1, 2).float() * self.rescale
        levels = self.model.get_image_embeddings(((batch - self.mean) / self.std).to(self.dtype))
        return [
            Sam2Embedding(
                levels[-1][i : i + 1], (im.height, im.width), self.side, [lv[i : i + 1] for lv in levels[:-1]]
            )
            for i, im in enumerate(images)
        ]

    def _decode(
        self, embeddings: list[Embedding], prompts: list[Prompts], multimask: bool
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        levels = [[*cast(Sam2Embedding, e).high_res, e.features] for e in embeddings]  # finest first
        return decode_levels(self.model, levels, embeddings, prompts, multimask, self.dtype)
