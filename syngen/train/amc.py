"""AMC (attention mask consistency, METHODS.md §5) on BLIP image-text matching: Grad-CAM, the AMC loss, the ITM
loss with in-batch hard negatives, and the box masks they compare against.

Tensors: ``pixel_values`` (B, 3, H, W) as the BLIP processor makes them, ``input_ids``/``attention_mask`` (B, T),
heat maps (B, H, W) in [0, 1] at the model's input size, box masks (B, H, W) in {0, 1}.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import BlipForImageTextRetrieval


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
    """METHODS.md §5 over a batch of heat maps and box masks (B, H, W). Samples with an empty mask carry no box
    and are left out (the loss is 0 when none is left); a mask covering the image has ``mean_out = 0``."""
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


@dataclass
class AmcBatch:
    """Collated regions: one row per (image, phrase, box). ``groups`` ids the image of each row (rows of one
    image, or with one phrase, are never each other's negatives)."""

    pixel_values: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    masks: torch.Tensor
    groups: list[str]
    phrases: list[str]


def amc_step(
    model: BlipForImageTextRetrieval,
    batch: AmcBatch,
    layer: int,
    weights: dict[str, float],
    min_heat: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The training loss ``itm_weight · L_ITM + amc_weight · L_AMC`` of one batch and its logged figures.

    ``weights`` holds ``itm_weight``, ``amc_weight`` and :func:`amc_loss`'s margins and term weights. Samples whose
    raw Grad-CAM peak is below ``min_heat`` (a random model's maps are ~1e-13) are left out of the AMC loss:
    normalising them divides by ~1e-7 and explodes the gradients.
    """
    image_embeds = model.vision_model(pixel_values=batch.pixel_values).last_hidden_state
    side = int(round((image_embeds.shape[1] - 1) ** 0.5))
    pos = match(model, image_embeds, batch.input_ids, batch.attention_mask, layer)
    raw = gradcam(pos, batch.attention_mask, (side, side))
    heat = normalise(raw, tuple(batch.pixel_values.shape[-2:]))
    live = raw.flatten(1).max(1).values >= min_heat
    amc = amc_loss(
        heat,
        batch.masks * live[:, None, None],
        **{k: weights[k] for k in ("mean_margin", "max_margin", "mean_weight", "max_weight")},
    )
    itm = itm_loss(model, image_embeds, batch, pos.logits)
    loss = weights["itm_weight"] * itm + weights["amc_weight"] * amc.loss
    ratio = in_box_ratio(heat.detach(), batch.masks)[batch.masks.flatten(1).sum(1) > 0]
    logs = {
        "loss": loss.item(),
        "loss/amc": amc.loss.item(),
        "loss/amc_mean": amc.mean.item(),
        "loss/amc_max": amc.max.item(),
        "loss/itm": itm.item(),
        "in_box_ratio": ratio.mean().item() if len(ratio) else 0.0,
        "amc/samples": float(amc.used),
    }
    return loss, logs


def itm_loss(
    model: BlipForImageTextRetrieval, image_embeds: torch.Tensor, batch: AmcBatch, pos_logits: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy of the ITM head on the positives (label 1) and on in-batch hard negatives (label 0): for each
    image the most similar other text, for each text the most similar other image (by BLIP's unimodal
    projections), never a row of the same image or the same phrase."""
    with torch.no_grad():
        text = model.text_encoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        text_feat = F.normalize(model.text_proj(text[:, 0]), dim=-1)
        image_feat = F.normalize(model.vision_proj(image_embeds[:, 0]), dim=-1)
        sim = image_feat @ text_feat.t()
        n = len(batch.groups)
        allowed = torch.tensor(
            [
                [batch.groups[i] != batch.groups[j] and batch.phrases[i] != batch.phrases[j] for j in range(n)]
                for i in range(n)
            ],
            dtype=torch.bool,
            device=sim.device,
        )
        neg_text = hard_negatives(sim, allowed)  # per image
        neg_image = hard_negatives(sim.t(), allowed.t())  # per text
    rows_i = torch.nonzero(neg_text >= 0)[:, 0]
    rows_t = torch.nonzero(neg_image >= 0)[:, 0]
    images = torch.cat([image_embeds[rows_i], image_embeds[neg_image[rows_t]]])
    ids = torch.cat([batch.input_ids[neg_text[rows_i]], batch.input_ids[rows_t]])
    att = torch.cat([batch.attention_mask[neg_text[rows_i]], batch.attention_mask[rows_t]])
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
