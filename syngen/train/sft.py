"""``syngen train sft``: the text-promptable SAM policy trained with SAM's focal + Dice loss on the ``grounding`` masks.

Expected dataset: the ``grounding`` config (one row per image: ``id``, ``image``, ``regions`` = [{``phrase``,
``mask`` (COCO RLE)}, ...]). Each region's phrase is a prompt and its mask the target.

The loss is SAM's (Kirillov et al. 2023, docs/methods.md#the-supervised-loss): ``20 · focal + 1 · Dice`` on
the final mask, plus ``coarse_weight`` × the same on the prompter's coarse mask. Plain per-pixel BCE on small
objects is lowest when the policy predicts nothing; Dice is 1 for an empty prediction whatever the object's size,
and focal down-weights the many easy background pixels. Logged: ``loss`` (the sum), ``loss/focal`` and
``loss/dice`` (final mask, unweighted), ``loss/coarse`` (the coarse mask's weighted focal + Dice, before
``coarse_weight``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from syngen.train.config import SamTrainConfig, SftConfig
from syngen.train.data import RegionDataset, load_split
from syngen.train.evaluation import ris_scores
from syngen.train.objective import Objective
from syngen.train.policies import Policy, start_policy
from syngen.train.policy import EmbeddingCache, TextPromptableSam, image_key

FOCAL_ALPHA, FOCAL_GAMMA = 0.25, 2.0  # RetinaNet's focal loss settings, as SAM and SAM 2 train with
FOCAL_WEIGHT, DICE_WEIGHT = 20.0, 1.0  # SAM's 20:1


def masked_focal(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per-sample mean sigmoid focal loss ``−α_t (1 − p_t)^γ log p_t`` over the valid pixels: (B, S, S) -> (B,).

    p_t = σ(z) on target pixels, 1 − σ(z) elsewhere; α_t = α on target pixels, 1 − α elsewhere (α 0.25, γ 2).
    """
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    prob = torch.sigmoid(logits)
    p_t = prob * target + (1 - prob) * (1 - target)
    alpha_t = FOCAL_ALPHA * target + (1 - FOCAL_ALPHA) * (1 - target)
    loss = alpha_t * (1 - p_t) ** FOCAL_GAMMA * ce
    return (loss * valid).sum((1, 2)) / valid.sum((1, 2)).clamp(min=1)


def masked_dice(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Per-sample Dice loss ``1 − (2|p·t| + ε) / (|p| + |t| + ε)`` over the valid pixels: (B, S, S) -> (B,)."""
    prob = torch.sigmoid(logits) * valid
    target = target * valid
    return 1 - (2 * (prob * target).sum((1, 2)) + eps) / (prob.sum((1, 2)) + target.sum((1, 2)) + eps)


def mask_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """SAM's supervised loss per sample: (``20 · focal + Dice``, focal, Dice), each (B,)."""
    focal, dice = masked_focal(logits, target, valid), masked_dice(logits, target, valid)
    return FOCAL_WEIGHT * focal + DICE_WEIGHT * dice, focal, dice


class SamObjective(Objective):
    """What the SAM policy's objectives share: the policy, the embedding cache, batching and the forward pass."""

    config: SamTrainConfig
    mask_keys: tuple[str, ...] = ()  # item keys holding (H, W) masks to turn into decoder-resolution targets
    eval_mask_key = "mask"  # the item key of the mask that evaluation compares against

    def __init__(self, config: SamTrainConfig):
        super().__init__(config)
        self.policy: Policy | None = None
        disk = Path(config.output_dir) / "embeddings" if config.disk_cache else None
        self.cache = EmbeddingCache(config.embedding_cache if config.freeze_image_encoder else 0, disk)

    def make_policy(self) -> Policy:
        raise NotImplementedError

    def build(self, device: torch.device) -> Policy:
        self.policy = self.make_policy().to(device)
        self.policy.sam.vision_encoder.requires_grad_(not self.config.freeze_image_encoder)
        return self.policy

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Items -> ``{"keys", "images", "input_ids", "attention_mask", "valid", <mask key>: (B, S, S), ...}``."""
        assert self.policy is not None
        batch: dict[str, Any] = {
            "keys": [image_key(item["key"], item["image"]) for item in items],
            "images": [item["image"] for item in items],
            **self.policy.tokenize([item["phrase"] for item in items]),
        }
        if "index" in items[0]:
            batch["index"] = torch.tensor([item["index"] for item in items])
        for name in self.mask_keys:
            targets, valid = zip(*(self.policy.mask_target(item[name]) for item in items), strict=True)
            batch[name] = torch.stack(targets)
            batch["valid"] = torch.stack(valid)
        return batch

    def batch_size(self, batch: dict[str, Any]) -> int:
        return len(batch["keys"])

    def embeddings(self, batch: dict[str, Any]) -> torch.Tensor:
        """The batch's image embeddings: from the cache, or through the encoder with gradients when it trains."""
        assert self.policy is not None
        if not self.config.freeze_image_encoder:
            return self.policy.encode_images(batch["images"])
        return self.cache.embeddings(self.policy, batch["images"], batch["keys"])

    def forward(self, model: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mask logits, coarse logits or None for a policy without a coarse mask), each (B, S, S) float32."""
        masks, coarse = model(self.embeddings(batch), batch["input_ids"], batch["attention_mask"])
        return masks.float(), None if coarse is None else coarse.float()

    def evaluate(self, model: torch.nn.Module, items: Dataset) -> dict[str, float]:
        """``eval/mIoU`` and ``eval/oIoU`` against each item's ``eval_mask_key`` mask."""

        def embed(batch: list[dict[str, Any]]) -> torch.Tensor:
            keys = [image_key(item["key"], item["image"]) for item in batch]
            return self.embeddings({"images": [item["image"] for item in batch], "keys": keys})

        assert isinstance(model, type(self.policy))
        return ris_scores(model, items, embed, self.eval_mask_key, self.config.per_device_eval_batch_size)

    def save(self, model: torch.nn.Module, folder: Path) -> None:
        model.save_pretrained(folder)  # type: ignore[operator]

    def card(self) -> dict[str, Any]:
        assert self.policy is not None
        return {
            "base_models": self.policy.base_models,
            "tags": ["referring-segmentation", "sam", self.policy.name, self.name],
            "task": "image-segmentation",
            "description": self.policy.description,
        }


class SftObjective(SamObjective):
    """SAM's focal + Dice on each region's mask, plus ``coarse_weight`` × the same on the coarse mask."""

    name = "sft"
    config_class = SftConfig
    config: SftConfig
    mask_keys = ("mask",)
    unit = "regions"
    progress_metrics = ("loss", "loss/focal", "loss/dice")

    def make_policy(self) -> Policy:
        c = self.config
        if c.model_name_or_path:
            return start_policy(c.policy, c.model_name_or_path, train_text_encoder=c.train_text_encoder)
        return TextPromptableSam.from_parts(
            c.sam_model_name_or_path,
            c.text_encoder_name_or_path,
            prompter_layers=c.prompter_layers,
            prompter_heads=c.prompter_heads,
            sparse_queries=c.sparse_queries,
            train_text_encoder=c.train_text_encoder,
        )

    def dataset(self, split: str | None = None) -> RegionDataset:
        c = self.config
        return RegionDataset(
            load_split(c.dataset_name, "grounding", split or c.dataset_train_split), source=c.dataset_name
        )

    def loss(self, model: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        masks, coarse = self.forward(model, batch)
        target, valid = batch["mask"], batch["valid"]
        final, focal, dice = (term.mean() for term in mask_loss(masks, target, valid))
        logged = {"loss/focal": focal.detach(), "loss/dice": dice.detach()}
        if coarse is None:  # SAM 3: no coarse mask
            return final, logged
        coarse_loss = mask_loss(coarse, target, valid)[0].mean()
        return final + self.config.coarse_weight * coarse_loss, {**logged, "loss/coarse": coarse_loss.detach()}
