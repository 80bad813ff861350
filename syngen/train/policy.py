"""The text-promptable SAM policy (after ReferSAM, docs/methods.md#the-text-promptable-sam-policy), its
image-embedding cache, and its batches.

``TextPromptableSam`` = a CLIP text encoder (frozen by default) + a prompter (one dense query initialised from
the sentence embedding and ``sparse_queries`` learnable queries, refined by attention layers: self-attention,
cross-attention to the image embedding, cross-attention to the words, feed-forward) + SAM's prompt encoder and
mask decoder (transformers ``SamModel``). The dense query dotted with a mask feature map gives a coarse mask,
which enters SAM as its mask prompt; the sparse queries are SAM's sparse prompt embeddings. SAM's image encoder
is frozen by default; :class:`EmbeddingCache` keeps its outputs so each image is encoded once.

Saved with ``save_pretrained(folder)`` (``model.safetensors`` + ``config.json`` + tokenizer + SAM processor)
and loaded with ``TextPromptableSam.from_pretrained(folder or Hub id)``. Masks come out as logits at the mask
decoder's resolution (``image_size / 4`` squared, 256 for SAM ViT-B) over SAM's padded square input.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, SamConfig, SamModel, SamProcessor

from syngen.errors import ConfigError, PreflightError, UsageError
from syngen.models.loading import resolve
from syngen.models.sam_hf import seeing
from syngen.refs import ModelRef

if TYPE_CHECKING:
    from syngen.train.policies import Policy


class PrompterLayer(nn.Module):
    """Queries attend to each other, to the image embedding, then to the words; then a feed-forward block."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.image_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.text_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(4))

    def forward(
        self, queries: torch.Tensor, image: torch.Tensor, pos: torch.Tensor, words: torch.Tensor, pad: torch.Tensor
    ) -> torch.Tensor:
        queries = self.norms[0](queries + self.self_attn(queries, queries, queries, need_weights=False)[0])
        queries = self.norms[1](queries + self.image_attn(queries, image + pos, image, need_weights=False)[0])
        attended = self.text_attn(queries, words, words, key_padding_mask=pad, need_weights=False)[0]
        queries = self.norms[2](queries + attended)
        return self.norms[3](queries + self.ffn(queries))


class TextPromptableSam(nn.Module, PyTorchModelHubMixin, library_name="syngen", tags=["referring-segmentation"]):
    """(image embedding, phrase) -> mask logits. See the module docstring."""

    name = "text-promptable-sam"
    config_key = "sam_config"  # the init argument that marks a saved TextPromptableSam's config.json
    description = (
        "A text-promptable SAM (ReferSAM-style prompter on SAM's mask decoder), loaded with "
        "`load_policy(folder)` from `syngen.train.policies`."
    )

    def __init__(
        self,
        sam_config: dict[str, Any],
        text_config: dict[str, Any],
        prompter_layers: int = 2,
        prompter_heads: int = 8,
        sparse_queries: int = 4,
        train_text_encoder: bool = False,
        base_models: list[str] | None = None,
    ):
        super().__init__()
        self.sam = SamModel(seeing(SamConfig.from_dict(sam_config)))  # random init only until weights load
        self.text_encoder = CLIPTextModel(CLIPTextConfig.from_dict(text_config))
        dim = self.sam.config.prompt_encoder_config.hidden_size
        text_dim = self.text_encoder.config.hidden_size
        self.word_proj = nn.Linear(text_dim, dim)
        self.sentence_proj = nn.Linear(text_dim, dim)
        self.sparse = nn.Parameter(torch.randn(sparse_queries, dim) * 0.02)
        self.layers = nn.ModuleList(PrompterLayer(dim, prompter_heads) for _ in range(prompter_layers))
        self.mask_features = nn.Conv2d(dim, dim, kernel_size=1)
        self.base_models = list(base_models or [])
        self.tokenizer: CLIPTokenizer | None = None
        self.processor: SamProcessor | None = None
        self.text_encoder.requires_grad_(train_text_encoder)
        self.sam.vision_encoder.requires_grad_(False)
        # of SAM's prompt encoder only the mask embedding is used: points and boxes are never given
        self.sam.prompt_encoder.requires_grad_(False)
        self.sam.prompt_encoder.mask_embed.requires_grad_(True)

    @classmethod
    def from_parts(cls, sam: str, text_encoder: str, **prompter: Any) -> TextPromptableSam:
        """A policy from a SAM and a CLIP checkpoint (Hub id, local folder, or ``tiny:`` twin); new prompter."""
        sam_path, text_path = resolve(ModelRef(id=sam)), resolve(ModelRef(id=text_encoder))
        sam_model = SamModel.from_pretrained(sam_path)
        text_model = CLIPTextModel.from_pretrained(text_path)
        policy = cls(
            sam_model.config.to_dict(), text_model.config.to_dict(), base_models=[sam, text_encoder], **prompter
        )
        policy.sam.load_state_dict(sam_model.state_dict())
        policy.text_encoder.load_state_dict(text_model.state_dict())
        policy.tokenizer = CLIPTokenizer.from_pretrained(text_path)
        policy.processor = SamProcessor.from_pretrained(sam_path)
        return policy

    @classmethod
    def from_base(cls, path: str, **options: Any) -> TextPromptableSam:
        """Not a way to start this policy: it starts :meth:`from_parts` (raises :class:`ConfigError`)."""
        raise ConfigError(
            f"model_name_or_path: {path} is not a syngen policy checkpoint; a new text-promptable-sam policy starts "
            "from sam_model_name_or_path and text_encoder_name_or_path (leave model_name_or_path empty), and "
            "`--policy sam3` starts from a SAM 3 checkpoint"
        )

    def _save_pretrained(self, save_directory: Path) -> None:
        super()._save_pretrained(save_directory)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(save_directory)
        if self.processor is not None:
            self.processor.save_pretrained(save_directory)

    @staticmethod
    def locate(path: str) -> Path:
        """The folder of a saved policy (a local folder, or a Hub id fetched into the Hub cache).

        Raises :class:`~syngen.errors.UsageError` naming ``path`` when it is neither a folder nor a model on the
        Hub (a path that looks local is not looked up there)."""
        try:
            return resolve(ModelRef(id=path))
        except PreflightError as err:
            raise UsageError(str(err)) from None

    @classmethod
    def load(cls, path: str, device: str | torch.device = "cpu") -> TextPromptableSam:
        """A saved policy (see :meth:`locate`) with its tokenizer and processor, on ``device``."""
        folder = cls.locate(path)
        policy = cls.from_pretrained(folder, strict=True, map_location=str(device))
        policy.tokenizer = CLIPTokenizer.from_pretrained(folder)
        policy.processor = SamProcessor.from_pretrained(folder)
        return policy.to(device)

    @property
    def image_size(self) -> int:
        """Side of SAM's padded square input (1024 for the real SAM)."""
        return self.sam.config.vision_config.image_size

    @property
    def mask_size(self) -> int:
        """Side of the mask decoder's output (4× the embedding grid: 256 for the real SAM)."""
        return 4 * self.sam.config.prompt_encoder_config.image_embedding_size

    def encode_images(self, images: list[Image.Image]) -> torch.Tensor:
        """SAM's image embeddings (B, C, h, w) of ``images`` (with gradients when the encoder is trained)."""
        assert self.processor is not None
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"]
        param = next(self.sam.vision_encoder.parameters())
        return self.sam.vision_encoder(pixels.to(param.device, param.dtype))[0]

    def tokenize(self, phrases: list[str]) -> dict[str, torch.Tensor]:
        assert self.tokenizer is not None
        return dict(self.tokenizer(phrases, padding=True, truncation=True, return_tensors="pt"))

    def forward(
        self, image_embeddings: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask logits (B, S, S) and the coarse mask's logits (B, S, S), S = ``mask_size``."""
        text = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask)
        words = self.word_proj(text.last_hidden_state)
        sentence = self.sentence_proj(text.pooler_output)
        batch, dim = sentence.shape
        queries = torch.cat([sentence[:, None], self.sparse.expand(batch, -1, -1)], dim=1)
        image_pos = self.sam.get_image_wide_positional_embeddings().expand(batch, -1, -1, -1)
        image = image_embeddings.flatten(2).transpose(1, 2)
        pos = image_pos.flatten(2).transpose(1, 2)
        pad = attention_mask == 0
        for layer in self.layers:
            queries = layer(queries, image, pos, words, pad)
        features = self.mask_features(image_embeddings)
        coarse = torch.einsum("bd,bdhw->bhw", queries[:, 0], features) / math.sqrt(dim)
        coarse = F.interpolate(coarse[:, None], scale_factor=4, mode="bilinear", align_corners=False)
        dense = self.sam.prompt_encoder.mask_embed(coarse)
        masks, _ = self.sam.mask_decoder(
            image_embeddings=image_embeddings,
            image_positional_embeddings=image_pos,
            sparse_prompt_embeddings=queries[:, None, 1:],
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        return masks[:, 0, 0], coarse[:, 0]

    def mask_target(self, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """A (H, W) bool mask as a target on the decoder's grid: see :func:`mask_target`."""
        return mask_target(mask, self.image_size, self.mask_size)

    def image_masks(self, logits: torch.Tensor, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
        """Decoder logits (B, S, S) -> bool masks at each image's (H, W): see :func:`image_masks`."""
        return image_masks(logits, sizes, self.image_size)


class EmbeddingCache:
    """SAM image embeddings by image key: the ``limit`` most recently used in memory, optionally all on disk.

    ``limit`` = 0 keeps nothing (the encoder runs every step). ``encoded`` counts images through the encoder.
    Images are encoded one per call: CPU kernels round differently for other batch sizes, so a batch-encoded
    embedding would depend on which images shared its batch, and a resumed run (which fills the cache in other
    batches) would not reproduce the uninterrupted one. SAM's 64×64-token images already fill a GPU's matmuls.
    """

    def __init__(self, limit: int, disk: Path | None = None):
        self.limit = limit
        self.disk = disk
        self.encoded = 0
        self._memory: OrderedDict[str, torch.Tensor] = OrderedDict()

    def embeddings(self, policy: Policy, images: list[Image.Image], keys: list[str]) -> torch.Tensor:
        """(B, C, h, w) embeddings of ``images``, encoding (in one call, without gradients) only the missing ones."""
        device = next(policy.sam.vision_encoder.parameters()).device
        found: dict[str, torch.Tensor] = {}
        for key in keys:
            if key in found:
                continue
            if key in self._memory:
                self._memory.move_to_end(key)
                found[key] = self._memory[key]
            elif self.disk is not None and (self.disk / f"{key}.safetensors").exists():
                found[key] = load_file(self.disk / f"{key}.safetensors")["embedding"].to(device)
        todo = {key: image for key, image in zip(keys, images, strict=True) if key not in found}
        if todo:
            with torch.no_grad():  # one image per call: an embedding must not depend on its batch-mates (resume)
                encoded = torch.cat([policy.encode_images([image]) for image in todo.values()])
            self.encoded += len(todo)
            for key, embedding in zip(todo, encoded, strict=True):
                found[key] = embedding
                if self.disk is not None:
                    self.disk.mkdir(parents=True, exist_ok=True)
                    tmp = self.disk / f".{key}.tmp"
                    save_file({"embedding": embedding.detach().cpu().contiguous()}, tmp)
                    tmp.rename(self.disk / f"{key}.safetensors")
        if self.limit:
            for key in keys:
                self._memory[key] = found[key]
                self._memory.move_to_end(key)
            while len(self._memory) > self.limit:
                self._memory.popitem(last=False)
        return torch.stack([found[key] for key in keys])


def image_key(image_id: str | None, image: Image.Image) -> str:
    """A file-safe cache key: a hash of the image id, or of the pixels when there is no id."""
    source = image_id.encode() if image_id else image.tobytes()
    return hashlib.sha1(source).hexdigest()


def input_shape(height: int, width: int, image_size: int) -> tuple[int, int]:
    """(h, w) of an image resized for SAM (longest side = ``image_size``), before padding to a square."""
    scale = image_size / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def mask_target(mask: np.ndarray, image_size: int, mask_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A (H, W) bool mask at the decoder's resolution: (target (S, S) float 0/1, valid (S, S) bool).

    The mask is resized as SAM resizes the image (longest side to ``image_size``), mapped onto the decoder's
    ``mask_size`` grid over the padded square, and binarised at 0.5; ``valid`` is False on SAM's padding.
    """
    height, width = mask.shape
    new_h, new_w = input_shape(height, width, image_size)
    scale = mask_size / image_size
    h, w = max(1, math.ceil(new_h * scale)), max(1, math.ceil(new_w * scale))
    resized = F.interpolate(torch.from_numpy(mask).float()[None, None], size=(h, w), mode="bilinear", antialias=True)
    target = torch.zeros(mask_size, mask_size)
    target[:h, :w] = (resized[0, 0] >= 0.5).float()
    valid = torch.zeros(mask_size, mask_size, dtype=torch.bool)
    valid[:h, :w] = True
    return target, valid


def image_masks(logits: torch.Tensor, sizes: list[tuple[int, int]], image_size: int) -> list[np.ndarray]:
    """Decoder logits (B, S, S) -> bool masks at each image's (H, W): upsample, drop the padding, resize, σ ≥ 0.5."""
    masks = []
    up = F.interpolate(logits[:, None].float(), size=(image_size, image_size), mode="bilinear", align_corners=False)
    for one, (height, width) in zip(up, sizes, strict=True):
        new_h, new_w = input_shape(height, width, image_size)
        full = F.interpolate(one[None, :, :new_h, :new_w], size=(height, width), mode="bilinear", align_corners=False)
        masks.append((full[0, 0] > 0).cpu().numpy())
    return masks
