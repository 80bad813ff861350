"""Segmenter backend: the segment-anything package with an original ``.pth`` checkpoint (e.g. sam_vit_b_01ec64.pth).

segment-anything imports torchvision, so it is imported only when this backend is loaded.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from syngen.models.sam_hf import CachedSegmenter, Embedding, Prompts, best_mask


def model_type(path: str | Path) -> str:
    """The segment-anything model type named in a checkpoint's file name (vit_b, vit_l, vit_h); vit_b if none."""
    found = re.search(r"vit_[bhl]", Path(path).name.lower())
    return found.group(0) if found else "vit_b"


class OriginalSam(CachedSegmenter):
    """SAM through segment-anything's modules; ``path`` is the ``.pth`` file, loaded with ``weights_only=True``."""

    def __init__(self, path: str | Path, device: str = "cpu", dtype: str = "float32", trust_remote_code: bool = False):
        super().__init__(path, device, dtype, trust_remote_code)
        from segment_anything import sam_model_registry

        self.model = sam_model_registry[model_type(self.path)]()
        self.model.load_state_dict(torch.load(self.path, map_location="cpu", weights_only=True))
        self.model.to(self.device, self.dtype).eval()

    def _encode(self, images: list[Image.Image]) -> list[Embedding]:
        from segment_anything.utils.transforms import ResizeLongestSide

        side = self.model.image_encoder.img_size
        batch, sizes = [], []
        for image in images:
            shape = ResizeLongestSide.get_preprocess_shape(image.height, image.width, side)
            resized = image.resize(shape[::-1], Image.Resampling.BILINEAR)
            pixels = torch.as_tensor(np.array(resized), device=self.device).permute(2, 0, 1).float()
            batch.append(self.model.preprocess(pixels))  # normalise, pad to the square input
            sizes.append(((image.height, image.width), (resized.height, resized.width)))
        features = self.model.image_encoder(torch.stack(batch).to(self.dtype))
        return [Embedding(features[i : i + 1], original, resized) for i, (original, resized) in enumerate(sizes)]

    def _decode(
        self, embeddings: list[Embedding], prompts: list[Prompts], multimask: bool
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        # segment-anything's mask decoder takes one image's embedding per call: one call per image
        return [
            self._decode_one(embedding, *prompt, multimask)
            for embedding, prompt in zip(embeddings, prompts, strict=True)
        ]

    def _decode_one(
        self,
        embedding: Embedding,
        boxes: torch.Tensor | None,
        points: torch.Tensor | None,
        labels: torch.Tensor | None,
        multimask: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        sparse, dense = self.model.prompt_encoder(
            points=None if points is None else (points.to(self.dtype), labels), boxes=boxes, masks=None
        )
        low_res, scores = self.model.mask_decoder(
            image_embeddings=embedding.features,
            image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )
        low_res, scores = best_mask(low_res, scores)
        masks = self.model.postprocess_masks(low_res.float(), embedding.input_size, embedding.original_size)
        return masks[:, 0] > self.model.mask_threshold, scores
