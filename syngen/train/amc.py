"""AMC (attention mask consistency, docs/methods.md#amc-attention-mask-consistency) on BLIP image-text
matching: Grad-CAM, the AMC loss, the ITM loss with in-batch hard negatives, and the box masks they compare against.

Tensors: ``pixel_values`` (B, 3, H, W) as the BLIP processor makes them, ``input_ids``/``attention_mask`` (B, T),
heat maps (B, H, W) in [0, 1] at the model's input size, box masks (B, H, W) in {0, 1}.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset
from transformers import BlipForImageTextRetrieval, BlipProcessor

from syngen.errors import PreflightError, TrainError
from syngen.models.blip_itm import BlipItm
from syngen.models.loading import resolve
from syngen.refs import ModelRef
from syngen.train.config import AmcConfig
from syngen.train.data import RegionDataset, load_split
from syngen.train.evaluation import pointing_scores
from syngen.train.objective import Objective


@dataclass
class Match:
    """One ITM forward: ``logits`` (B, 2) (index 1 = match) and the chosen layer's cross-attention probabilities
    ``attention`` (B, heads, T, 1 + patches), still in the graph."""

    logits: torch.Tensor
    attention: torch.Tensor


def match(
    model: BlipForImageTextRetrieval,
    image_embeds: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    layer: int,
) -> Match:
    """ITM logits of each (image, text) row pair, with the cross-attention of text-encoder layer ``layer``."""
    image_atts = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
    out = model.text_encoder(
        input_ids=input_ids,
        attention_mask=attention_mask,
        encoder_hidden_states=image_embeds,
        encoder_attention_mask=image_atts,
        output_attentions=True,
    )
    return Match(model.itm_head(out.last_hidden_state[:, 0, :]), out.cross_attentions[layer])


def check_layer(model: BlipForImageTextRetrieval, layer: int) -> int:
    """``layer`` as a non-negative index; raises ValueError when it is out of range or the last layer."""
    n = model.config.text_config.num_hidden_layers
    index = layer % n if -n <= layer < n else None
    if index is None or index == n - 1:
        raise ValueError(
            f"gradcam_layer {layer} must name a text-encoder layer before the last (the model has {n}; the last "
            "layer's per-token maps are zero because only [CLS] feeds the ITM head)"
        )
    return index


def gradcam(m: Match, attention_mask: torch.Tensor, grid: tuple[int, int], create_graph: bool = True) -> torch.Tensor:
    """Raw Grad-CAM (B, h, w): attention × relu(∂ match logit / ∂ attention), image [CLS] column dropped, averaged
    over heads and the real (unpadded) text tokens, then ReLU. ``create_graph`` keeps it differentiable."""
    (grad,) = torch.autograd.grad(m.logits[:, 1].sum(), m.attention, create_graph=create_graph)
    cam = m.attention[..., 1:] * grad[..., 1:].clamp(min=0)  # B, heads, T, patches
    tokens = attention_mask[:, None, :, None].to(cam.dtype)
    cam = (cam * tokens).sum(2) / tokens.sum(2)  # B, heads, patches
    return F.relu(cam.mean(1)).reshape(-1, *grid)


def normalise(cam: torch.Tensor, size: tuple[int, int], eps: float = 1e-7) -> torch.Tensor:
    """Per sample ``(g - min) / (max + eps)`` (AMC's normalisation), upsampled bilinearly to ``size`` (H, W)."""
    flat = cam.flatten(1)
    flat = flat - flat.min(1, keepdim=True).values
    flat = flat / (flat.max(1, keepdim=True).values + eps)
    return F.interpolate(flat.view_as(cam)[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def box_masks(
    boxes: Sequence[Sequence[float]], image_sizes: Sequence[tuple[int, int]], size: tuple[int, int]
) -> torch.Tensor:
    """(B, H, W) float masks at the model input ``size`` (H, W): 1 where a pixel centre lies in the box, which is
    given in pixels of its image (``image_sizes`` as (width, height); the processor resizes without padding)."""
    h, w = size
    ys = torch.arange(h, dtype=torch.float32)[:, None] + 0.5
    xs = torch.arange(w, dtype=torch.float32)[None, :] + 0.5
    masks = []
    for (x1, y1, x2, y2), (iw, ih) in zip(boxes, image_sizes, strict=True):
        sx, sy = w / iw, h / ih
        masks.append(((xs >= x1 * sx) & (xs <= x2 * sx) & (ys >= y1 * sy) & (ys <= y2 * sy)).float())
    return torch.stack(masks)


@dataclass
class AmcLoss:
    """The AMC loss and its two terms (scalars); ``used`` = samples with a non-empty mask."""

    loss: torch.Tensor
    mean: torch.Tensor
    max: torch.Tensor
    used: int


def amc_loss(
    heat: torch.Tensor,
    mask: torch.Tensor,
    mean_margin: float = 0.1,
    max_margin: float = 0.5,
    mean_weight: float = 0.2,
    max_weight: float = 0.8,
) -> AmcLoss:
    """The AMC loss (docs/methods.md#amc-attention-mask-consistency) over a batch of heat maps and box masks
    (B, H, W). Samples with an empty mask carry no box and are left out (the loss is 0 when none is left); a mask
    covering the image has ``mean_out = 0``."""
    keep = mask.flatten(1).sum(1) > 0
    g, m = heat[keep], mask[keep].to(heat.dtype)
    if g.shape[0] == 0:
        zero = heat.sum() * 0
        return AmcLoss(zero, zero, zero, 0)
    inside, outside = m.sum(), (1 - m).sum()
    mean_in = (g * m).sum() / inside
    mean_out = (g * (1 - m)).sum() / outside if outside > 0 else g.sum() * 0
    l_mean = F.relu(mean_out - mean_in + mean_margin)
    max_in = (g * m).flatten(1).max(1).values
    max_out = (g * (1 - m)).flatten(1).max(1).values
    l_max = F.relu(max_out - max_in + max_margin).mean()
    return AmcLoss(mean_weight * l_mean + max_weight * l_max, l_mean, l_max, int(keep.sum()))


def in_box_ratio(heat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per sample share of heat-map mass inside the box (B,); 0 for an all-zero map."""
    total = heat.flatten(1).sum(1)
    inside = (heat * mask).flatten(1).sum(1)
    return torch.where(total > 0, inside / total.clamp(min=torch.finfo(heat.dtype).tiny), torch.zeros_like(total))


def hard_negatives(sim: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """For each row, the column of highest similarity among ``allowed`` (B, B bool) ones; -1 when none is."""
    masked = sim.masked_fill(~allowed, float("-inf"))
    best = masked.argmax(1)
    return torch.where(allowed.any(1), best, torch.full_like(best, -1))


class AmcModel(torch.nn.Module):
    """BLIP ITM wrapped with the AMC settings, so that one ``forward`` (what DDP sees) gives the training loss.

    ``weights`` holds ``itm_weight``, ``amc_weight`` and :func:`amc_loss`'s margins and term weights. Samples whose
    raw Grad-CAM peak is below ``min_heat`` (a random model's maps are ~1e-13) are left out of the AMC loss:
    normalising them divides by ~1e-7 and explodes the gradients.
    """

    def __init__(self, itm: BlipForImageTextRetrieval, layer: int, weights: dict[str, float], min_heat: float):
        super().__init__()
        self.itm = itm
        self.layer = check_layer(itm, layer)
        self.weights = weights
        self.min_heat = min_heat

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        masks: torch.Tensor,
        allowed: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``itm_weight · L_ITM + amc_weight · L_AMC`` of a batch (see :func:`collate`) and its logged figures."""
        w = self.weights
        image_embeds = self.itm.vision_model(pixel_values=pixel_values).last_hidden_state
        pos = match(self.itm, image_embeds, input_ids, attention_mask, self.layer)
        raw = gradcam(pos, attention_mask, patch_grid(image_embeds))
        heat = normalise(raw, (pixel_values.shape[-2], pixel_values.shape[-1]))
        live = raw.detach().flatten(1).max(1).values >= self.min_heat
        terms = {k: w[k] for k in ("mean_margin", "max_margin", "mean_weight", "max_weight")}
        amc = amc_loss(heat, masks * live[:, None, None], **terms)
        itm = itm_loss(self.itm, image_embeds, input_ids, attention_mask, allowed, pos.logits)
        loss = w["itm_weight"] * itm + w["amc_weight"] * amc.loss
        boxed = masks.flatten(1).sum(1) > 0
        ratio = in_box_ratio(heat.detach(), masks)[boxed]
        logs = {
            "loss/amc": amc.loss.detach(),
            "loss/amc_mean": amc.mean.detach(),
            "loss/amc_max": amc.max.detach(),
            "loss/itm": itm.detach(),
            "in_box_ratio": ratio.mean() if len(ratio) else heat.new_zeros(()),
            "amc_samples": heat.new_tensor(float(amc.used)),
        }
        return loss, logs


def patch_grid(image_embeds: torch.Tensor) -> tuple[int, int]:
    """The (square) patch grid of ViT embeddings (B, 1 + h·w, D)."""
    side = round((image_embeds.shape[1] - 1) ** 0.5)
    return side, side


def collate(processor: BlipProcessor, items: list[dict[str, Any]], max_length: int) -> dict[str, torch.Tensor]:
    """Region items (``image``, ``phrase``, ``box``, ``key``) -> the keyword arguments of :class:`AmcModel`:
    processor outputs, box ``masks`` at the input size, and ``allowed`` (B, B): pairs that may serve as each
    other's ITM negatives (another image and another phrase)."""
    images = [item["image"] for item in items]
    phrases = [item["phrase"] for item in items]
    inputs = processor(
        images=images, text=phrases, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
    )
    size = tuple(inputs["pixel_values"].shape[-2:])
    masks = box_masks([item["box"] for item in items], [image.size for image in images], size)
    keys = [item["key"] for item in items]
    allowed = torch.tensor(
        [[keys[i] != keys[j] and phrases[i] != phrases[j] for j in range(len(items))] for i in range(len(items))]
    )
    return {
        "pixel_values": inputs["pixel_values"],
        "input_ids": inputs["input_ids"],
        "attention_mask": inputs["attention_mask"],
        "masks": masks,
        "allowed": allowed,
    }


def itm_loss(
    model: BlipForImageTextRetrieval,
    image_embeds: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    allowed: torch.Tensor,
    pos_logits: torch.Tensor,
) -> torch.Tensor:
    """Cross-entropy of the ITM head on the positives (label 1) and on in-batch hard negatives (label 0): for each
    image the most similar ``allowed`` text, for each text the most similar ``allowed`` image (by BLIP's unimodal
    projections, as ALBEF and BLIP pick them, but the hardest rather than sampled)."""
    with torch.no_grad():
        text = model.text_encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        text_feat = F.normalize(model.text_proj(text[:, 0]), dim=-1)
        image_feat = F.normalize(model.vision_proj(image_embeds[:, 0]), dim=-1)
        sim = image_feat @ text_feat.t()
        neg_text = hard_negatives(sim, allowed)  # per image
        neg_image = hard_negatives(sim.t(), allowed.t())  # per text
    rows_i = torch.nonzero(neg_text >= 0)[:, 0]
    rows_t = torch.nonzero(neg_image >= 0)[:, 0]
    images = torch.cat([image_embeds[rows_i], image_embeds[neg_image[rows_t]]])
    ids = torch.cat([input_ids[neg_text[rows_i]], input_ids[rows_t]])
    att = torch.cat([attention_mask[neg_text[rows_i]], attention_mask[rows_t]])
    logits = pos_logits
    if len(ids):
        image_atts = torch.ones(images.shape[:-1], dtype=torch.long, device=images.device)
        out = model.text_encoder(
            input_ids=ids, attention_mask=att, encoder_hidden_states=images, encoder_attention_mask=image_atts
        )
        logits = torch.cat([pos_logits, model.itm_head(out.last_hidden_state[:, 0])])
    labels = torch.zeros(len(logits), dtype=torch.long, device=logits.device)
    labels[: len(pos_logits)] = 1
    return F.cross_entropy(logits, labels)


class AmcObjective(Objective):
    """``syngen train amc``: AMC + ITM on each ``grounding`` region (phrase, box) with BLIP ITM."""

    name = "amc"
    config_class = AmcConfig
    config: AmcConfig
    progress_metrics = ("loss", "loss/amc", "loss/itm", "in_box_ratio")
    unit = "regions"

    def build(self, device: torch.device) -> torch.nn.Module:
        c = self.config
        self.itm = load_itm(c.model_name_or_path, device)
        weights = {k: getattr(c, k) for k in ("itm_weight", "amc_weight", *_AMC_TERMS)}
        try:
            return AmcModel(self.itm.model.train(), c.gradcam_layer, weights, c.min_heat)
        except ValueError as err:
            raise TrainError(str(err)) from None

    def dataset(self, split: str | None = None) -> RegionDataset:
        c = self.config
        rows = load_split(c.dataset_name, "grounding", split or c.dataset_train_split)
        return RegionDataset(rows, require=("phrase", "box"), source=c.dataset_name)

    def evaluate(self, model: torch.nn.Module, items: Dataset) -> dict[str, float]:
        """``eval/pointing``: the pointing game of each region's Grad-CAM map against its box."""
        c = self.config
        return pointing_scores(
            lambda images, phrases: heatmaps(self.itm, images, phrases, c.gradcam_layer, c.max_length),
            items,
            c.per_device_eval_batch_size,
        )

    def collate(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return collate(self.itm.processor, items, self.config.max_length)

    def batch_size(self, batch: dict[str, torch.Tensor]) -> int:
        return len(batch["input_ids"])

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        return model(**batch)

    def save(self, model: torch.nn.Module, folder: Path) -> None:
        model.itm.save_pretrained(folder)  # type: ignore[operator, union-attr]
        self.itm.processor.save_pretrained(folder)

    def card(self) -> dict[str, Any]:
        return {
            "base_models": [self.config.model_name_or_path],
            "tags": ["image-text-matching", "visual-grounding", "blip", "amc"],
            "task": "zero-shot-object-detection",  # the Hub's nearest task to pointing at a phrase
            "description": "BLIP image-text matching fine-tuned with attention mask consistency (AMC, Yang et al., "
            "CVPR 2023): its Grad-CAM heat map of a phrase is trained to fall inside the phrase's box. Load it with "
            "`BlipForImageTextRetrieval.from_pretrained(folder)`; score it with `syngen eval pointing`.",
        }


_AMC_TERMS = ("mean_margin", "max_margin", "mean_weight", "max_weight")


def load_itm(model: str, device: torch.device | str = "cpu") -> BlipItm:
    """BLIP ITM from a Hub id, a local folder (an ``amc`` output or checkpoint) or ``tiny:itm-blip``."""
    try:
        path = resolve(ModelRef(id=model))
    except PreflightError as err:
        raise TrainError(str(err)) from None
    return BlipItm(path, device=str(device))


def heatmaps(
    itm: BlipItm, images: Sequence[Image.Image], phrases: Sequence[str], layer: int, max_length: int = 35
) -> torch.Tensor:
    """Normalised Grad-CAM maps (B, h, w) on the patch grid, one per (image, phrase) (no training graph)."""
    model = itm.model.eval()
    index = check_layer(model, layer)
    inputs = itm.processor(
        images=list(images),
        text=list(phrases),
        padding=True,
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    ).to(itm.device)
    embeds = model.vision_model(pixel_values=inputs["pixel_values"]).last_hidden_state
    m = match(model, embeds, inputs["input_ids"], inputs["attention_mask"], index)
    raw = gradcam(m, inputs["attention_mask"], patch_grid(embeds), create_graph=False).detach()
    return normalise(raw, (raw.shape[-2], raw.shape[-1])).cpu()
