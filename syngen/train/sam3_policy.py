"""SAM 3 as a trainer policy: transformers' ``Sam3Model`` fine-tuned on (image, phrase) -> mask.

The mask a phrase gets, and whose log-likelihood mask DPO uses, is SAM 3's **semantic map**: the mask decoder's
one-channel per-pixel logit map for the prompt (``Sam3Model(...).semantic_seg``), not the mask of the query SAM 3
ranks first. The map is a smooth function of the weights, the same map for the policy and the reference, and needs
no ranking; the first-ranked query is an argmax over SAM 3's queries that can switch between the policy and the
reference or between steps, so log π(m) would jump from one query's mask to another's (docs/sam3-policy.md).

Only what the semantic map depends on runs and trains: the text encoder (frozen by default) and its projection,
the DETR encoder (image-text fusion) and the mask decoder's prompt cross-attention, pixel decoder and semantic
head. The DETR decoder, the query scoring, the instance-mask head and the geometry (box prompt) encoder are kept
(a saved policy is still a whole SAM 3) but frozen and not run. SAM 3's image encoder is frozen by default and
its output cached (:class:`~syngen.train.policy.EmbeddingCache`) as the FPN levels the mask decoder reads,
flattened and concatenated into one (C, N) tensor per image.

SAM 3 resizes the whole image to its square input (no padding), so the semantic map (4× the patch grid a side:
288 for facebook/sam3, 64 for tiny:sam3) covers the whole image, and targets are the masks resized to it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from PIL import Image
from torch import nn
from transformers import AutoTokenizer, PreTrainedTokenizerBase, Sam3Config, Sam3Model
from transformers.models.sam3.modeling_sam3 import Sam3SinePositionEmbedding

from syngen.models.loading import resolve
from syngen.refs import ModelRef

PREPROCESSOR = "preprocessor_config.json"
LEVELS = 3  # SAM 3's detector reads the first three of its four FPN levels (4×, 2×, 1× the patch grid)


class Sam3Policy(nn.Module, PyTorchModelHubMixin, library_name="syngen", tags=["referring-segmentation", "sam3"]):
    """(cached image features, phrase) -> SAM 3's semantic-map logits. See the module docstring."""

    name = "sam3"
    config_key = "sam3_config"  # the init argument that marks a saved Sam3Policy's config.json
    description = (
        "SAM 3 fine-tuned on its semantic map for referring phrases, loaded with `load_policy(folder)` from "
        "`syngen.train.policies`."
    )

    def __init__(
        self, sam3_config: dict[str, Any], train_text_encoder: bool = False, base_models: list[str] | None = None
    ):
        super().__init__()
        self.sam = Sam3Model(Sam3Config.from_dict(sam3_config))  # random init only until weights load
        vision = self.sam.config.vision_config
        self.position_encoding = Sam3SinePositionEmbedding(vision.fpn_hidden_size // 2, normalize=True)
        self.base_models = list(base_models or [])
        self.tokenizer: PreTrainedTokenizerBase | None = None
        self.preprocessor: dict[str, Any] | None = None
        self.sam.requires_grad_(False)
        for part in (self.sam.text_projection, self.sam.detr_encoder, self.sam.mask_decoder):
            part.requires_grad_(True)
        for unused in (self.sam.mask_decoder.mask_embedder, self.sam.mask_decoder.instance_projection):
            unused.requires_grad_(False)
        self.sam.text_encoder.requires_grad_(train_text_encoder)
        # dropout off (SAM 3's DETR encoder has 0.1), as TRL's DPOConfig(disable_dropout=True): the policy's
        # log-likelihoods in training mode must be comparable with the reference's, which runs in eval mode
        for module in self.sam.modules():
            if isinstance(module, nn.Dropout):
                module.p = 0.0

    @classmethod
    def from_base(cls, path: str, train_text_encoder: bool = False) -> Sam3Policy:
        """A policy from a SAM 3 checkpoint (Hub id such as facebook/sam3, local folder, or ``tiny:sam3``)."""
        folder = resolve(ModelRef(id=path))
        sam = Sam3Model.from_pretrained(folder)
        policy = cls(sam.config.to_dict(), train_text_encoder=train_text_encoder, base_models=[path])
        policy.sam.load_state_dict(sam.state_dict())
        policy._read_processing(folder)
        return policy

    @classmethod
    def load(cls, path: str, device: str | torch.device = "cpu") -> Sam3Policy:
        """A saved policy (local folder or Hub id) with its tokenizer and preprocessing, on ``device``."""
        folder = resolve(ModelRef(id=path))
        policy = cls.from_pretrained(folder, strict=True, map_location=str(device))
        policy._read_processing(folder)
        return policy.to(device)

    def _read_processing(self, folder: Path) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.preprocessor = json.loads((folder / PREPROCESSOR).read_text(encoding="utf-8"))

    def _save_pretrained(self, save_directory: Path) -> None:
        super()._save_pretrained(save_directory)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(save_directory)
        if self.preprocessor is not None:
            (Path(save_directory) / PREPROCESSOR).write_text(json.dumps(self.preprocessor, indent=2), encoding="utf-8")

    @property
    def image_size(self) -> int:
        """Side of SAM 3's square input (1008 for facebook/sam3)."""
        return self.sam.config.vision_config.backbone_config.image_size

    @property
    def grid(self) -> int:
        """Patches a side of the input."""
        return self.image_size // self.sam.config.vision_config.backbone_config.patch_size

    @property
    def mask_size(self) -> int:
        """Side of the semantic map (the finest FPN level: 4× the patch grid)."""
        return 4 * self.grid

    def encode_images(self, images: list[Image.Image]) -> torch.Tensor:
        """The detector's FPN levels of ``images`` flattened into (B, C, N) (with gradients when the encoder is
        trained). Images are resized to the square input (bilinear, antialiased) and normalised as the checkpoint's
        preprocessor config says (as the sam3 backend does)."""
        assert self.preprocessor is not None
        param = next(self.sam.vision_encoder.parameters())
        size = (int(self.preprocessor["size"]["height"]), int(self.preprocessor["size"]["width"]))
        arrays = [torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1) for image in images]
        pixels = torch.cat([F.interpolate(a[None].float(), size=size, mode="bilinear", antialias=True) for a in arrays])
        mean, std = (torch.tensor(self.preprocessor[k]).view(1, 3, 1, 1) for k in ("image_mean", "image_std"))
        pixels = (pixels * float(self.preprocessor.get("rescale_factor", 1 / 255)) - mean) / std
        levels = self.sam.get_vision_features(pixel_values=pixels.to(param.device, param.dtype)).fpn_hidden_states
        return torch.cat([level.flatten(2) for level in levels[:LEVELS]], dim=2)

    def levels(self, image_embeddings: torch.Tensor) -> list[torch.Tensor]:
        """(B, C, N) from :meth:`encode_images` -> the FPN levels (B, C, h, w), finest first."""
        sides = [4 * self.grid // 2**i for i in range(LEVELS)]
        parts = image_embeddings.split([side * side for side in sides], dim=2)
        return [part.unflatten(2, (side, side)) for part, side in zip(parts, sides, strict=True)]

    def tokenize(self, phrases: list[str]) -> dict[str, torch.Tensor]:
        """Token ids and attention mask, padded to the text encoder's length as SAM 3's processor pads."""
        assert self.tokenizer is not None
        length = self.sam.config.text_config.max_position_embeddings
        return dict(
            self.tokenizer(phrases, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
        )

    def forward(
        self, image_embeddings: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, None]:
        """Semantic-map logits (B, S, S), S = ``mask_size``, and None (SAM 3 has no coarse mask).

        The same computation as ``Sam3Model.forward(...).semantic_seg``, without the DETR decoder (the map does
        not read it): text features -> DETR encoder over the coarsest level -> mask decoder with no queries.
        """
        levels = self.levels(image_embeddings)
        coarsest = levels[-1]
        position = self.position_encoding(coarsest.shape, coarsest.device, coarsest.dtype)
        text = self.sam.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        text_mask = attention_mask.bool()
        encoded = self.sam.detr_encoder(
            vision_features=[coarsest], text_features=text, vision_pos_embeds=[position], text_mask=text_mask
        )
        decoded = self.sam.mask_decoder(
            decoder_queries=text.new_zeros(len(text), 0, text.shape[-1]),
            backbone_features=levels,
            encoder_hidden_states=encoded.last_hidden_state,
            prompt_features=text,
            prompt_mask=text_mask,
        )
        return decoded.semantic_seg[:, 0], None

    def mask_target(self, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """A (H, W) bool mask on the semantic map's grid: (target (S, S) 0/1, valid (S, S), all True: no padding).

        Resized as the image is (to the square, bilinear, antialiased) and binarised at 0.5.
        """
        side = self.mask_size
        resized = F.interpolate(
            torch.from_numpy(mask).float()[None, None], size=(side, side), mode="bilinear", antialias=True
        )
        return (resized[0, 0] >= 0.5).float(), torch.ones(side, side, dtype=torch.bool)

    def image_masks(self, logits: torch.Tensor, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
        """Semantic-map logits (B, S, S) -> bool masks at each image's (H, W): bilinear resize, σ ≥ 0.5."""
        return [
            (F.interpolate(one[None, None].float(), size=size, mode="bilinear", align_corners=False)[0, 0] > 0)
            .cpu()
            .numpy()
            for one, size in zip(logits, sizes, strict=True)
        ]
