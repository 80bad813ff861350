"""``syngen train dpo``: mask DPO (docs/methods.md#mask-dpo) on the ``preference`` pairs, from an ``sft`` policy.

Expected dataset: the ``preference`` config (one row per pair: ``prompt`` (the phrase), ``chosen`` and
``rejected`` masks as COCO RLE, and ``image_id`` naming the ``grounding`` row with the image, or an ``image``).
A pair's two masks are scored under one forward pass (same image, same phrase). Log-likelihoods are taken at the
mask decoder's resolution, targets resized to it, SAM's padding excluded (the SAM 3 policy: on its whole semantic
map, docs/sam3-policy.md). The reference policy is the initial policy, frozen; with ``precompute_ref_log_probs``
its log-probabilities are computed once before training and no second model is kept. The supervised term
(``sft_weight``, 1 by default as in RPO) is the ``sft`` loss on the chosen mask: without it DPO pushes whole masks
down (docs/learning.md). Logged (TRL's names): ``loss``, ``loss/dpo``, ``loss/sft`` (before ``sft_weight``),
``rewards/chosen``, ``rewards/rejected``, ``rewards/margins``, ``rewards/accuracies``, ``logps/chosen``,
``logps/rejected``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch.utils.data import DataLoader

from syngen.train.config import DpoConfig
from syngen.train.data import PairDataset, load_split
from syngen.train.policies import Policy, start_policy
from syngen.train.sft import SamObjective, mask_loss


def mask_logps(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """log π(m) = mean over valid pixels of ``m log σ(z) + (1 − m) log(1 − σ(z))``: (B, S, S) -> (B,)."""
    logp = target * F.logsigmoid(logits) + (1 - target) * F.logsigmoid(-logits)
    return (logp * valid).sum((1, 2)) / valid.sum((1, 2)).clamp(min=1)


def pair_logps(masks: torch.Tensor, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """log π of the batch's chosen and rejected masks under one set of mask logits: two (B,) tensors."""
    return mask_logps(masks, batch["chosen"], batch["valid"]), mask_logps(masks, batch["rejected"], batch["valid"])


def dpo_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    loss_type: str,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair DPO losses and the (detached) rewards β(log π − log π_ref) of the chosen and rejected masks.

    With h = (log π(m⁺) − log π_ref(m⁺)) − (log π(m⁻) − log π_ref(m⁻)): ``sigmoid`` −log σ(βh), or with
    ``label_smoothing`` ε (cDPO) −(1 − ε) log σ(βh) − ε log σ(−βh); ``ipo`` (h − 1/(2β))², ``hinge`` relu(1 − βh).
    """
    h = (chosen - ref_chosen) - (rejected - ref_rejected)
    if loss_type == "sigmoid":
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)
    elif loss_type == "ipo":
        losses = (h - 1 / (2 * beta)) ** 2
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * h)
    else:
        raise ValueError(f"unknown DPO loss {loss_type!r}")
    return losses, beta * (chosen - ref_chosen).detach(), beta * (rejected - ref_rejected).detach()


class DpoObjective(SamObjective):
    """Mask DPO against a frozen reference (the initial policy), with an optional supervised term."""

    name = "dpo"
    config_class = DpoConfig
    config: DpoConfig
    mask_keys = ("chosen", "rejected")
    eval_mask_key = "chosen"
    unit = "pairs"
    progress_metrics = ("loss", "rewards/margins", "rewards/accuracies")

    def __init__(self, config: DpoConfig):
        super().__init__(config)
        self.reference: Policy | None = None
        self.ref_logps: torch.Tensor | None = None  # (N, 2): chosen, rejected per pair index, when precomputed

    def make_policy(self) -> Policy:
        policy = start_policy(self.config.policy, self.config.model_name_or_path)
        policy.base_models = [self.config.model_name_or_path, *policy.base_models]
        return policy

    def build(self, device: torch.device) -> Policy:
        policy = super().build(device)
        if not self.config.precompute_ref_log_probs:
            self.reference = copy.deepcopy(policy).eval().requires_grad_(False)
            del self.reference.sam.vision_encoder  # the reference reads the policy's image embeddings
        return policy

    def dataset(self, split: str | None = None) -> PairDataset:
        c = self.config
        return PairDataset(
            load_split(c.dataset_name, "preference", split or c.dataset_train_split), source=c.dataset_name
        )

    def prepare(self, model: torch.nn.Module, loader: Any, accelerator: Accelerator) -> None:
        """With ``precompute_ref_log_probs``: the initial policy's log-probabilities of every pair, computed once
        (on resuming too: the loop calls this before it restores the checkpoint's weights)."""
        if not self.config.precompute_ref_log_probs or self.ref_logps is not None:
            return
        policy = accelerator.unwrap_model(model)
        dataset = self.dataset()
        self.ref_logps = torch.zeros(len(dataset), 2, device=accelerator.device)
        order = DataLoader(dataset, batch_size=self.config.per_device_train_batch_size, collate_fn=self.collate)
        with torch.no_grad():
            for batch in order:
                batch = {k: v.to(accelerator.device) if torch.is_tensor(v) else v for k, v in batch.items()}
                masks, _ = self.forward(policy, batch)
                self.ref_logps[batch["index"]] = torch.stack(pair_logps(masks, batch), dim=1)

    def loss(self, model: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        embeddings = self.embeddings(batch)
        masks = model(embeddings, batch["input_ids"], batch["attention_mask"])[0].float()
        chosen, rejected = pair_logps(masks, batch)
        if self.ref_logps is not None:
            ref_chosen, ref_rejected = self.ref_logps[batch["index"]].unbind(1)
        else:
            assert self.reference is not None
            with torch.no_grad():
                ref_masks = self.reference(embeddings.detach(), batch["input_ids"], batch["attention_mask"])[0]
            ref_chosen, ref_rejected = pair_logps(ref_masks.float(), batch)
        losses, chosen_rewards, rejected_rewards = dpo_loss(
            chosen,
            rejected,
            ref_chosen,
            ref_rejected,
            self.config.beta,
            self.config.loss_type,
            self.config.label_smoothing,
        )
        loss = losses.mean()
        terms = {"loss/dpo": loss.detach()}
        if self.config.sft_weight:
            supervised = mask_loss(masks, batch["chosen"], batch["valid"])[0].mean()
            loss = loss + self.config.sft_weight * supervised
            terms["loss/sft"] = supervised.detach()
        return loss, {
            **terms,
            "rewards/chosen": chosen_rewards.mean(),
            "rewards/rejected": rejected_rewards.mean(),
            "rewards/margins": (chosen_rewards - rejected_rewards).mean(),
            "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean(),
            "logps/chosen": chosen.detach().mean(),
            "logps/rejected": rejected.detach().mean(),
        }
