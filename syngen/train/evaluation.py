"""Evaluation during training: the held-out split and the scores, from :mod:`syngen.metrics` and the model alone.

(The ``syngen eval`` commands sit above training and are not imported here.)

- :func:`holdout` splits a training dataset into train and eval parts by image, seeded: no image is in both.
- :func:`ris_scores`: ``eval/mIoU`` and ``eval/oIoU`` of the SAM policy's masks (σ ≥ 0.5 at each image's size)
  against target masks, as ``syngen eval ris`` computes them.
- :func:`pointing_scores`: ``eval/pointing``, the pointing-game accuracy of BLIP ITM Grad-CAM maps against boxes.

Items are read one batch at a time, in dataset order, without a DataLoader (whose iterators draw from torch's
global random generator: evaluating must not change the training run).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from syngen.errors import ConfigError
from syngen.metrics import intersection_union, pointing_accuracy, pointing_hit, ris_metrics
from syngen.train.data import PairDataset, RegionDataset
from syngen.train.policies import Policy


def image_groups(dataset: Dataset) -> list[Hashable]:
    """The image each item of ``dataset`` belongs to (its row for regions, ``image_id`` for pairs; else itself)."""
    if isinstance(dataset, RegionDataset):
        return [row for row, _ in dataset.index]
    if isinstance(dataset, PairDataset) and "image_id" in dataset.pairs.column_names:
        return list(dataset.pairs["image_id"])
    return list(range(len(dataset)))  # type: ignore[arg-type]


def holdout(dataset: Dataset, fraction: float, seed: int) -> tuple[Subset, Subset]:
    """(train, eval) subsets of ``dataset``: a seeded ``fraction`` of its images (at least one, never all) with
    all their items in eval, the rest in train. Raises :class:`ConfigError` when there is a single image."""
    groups = image_groups(dataset)
    unique = sorted(set(groups), key=str)
    if len(unique) < 2:
        raise ConfigError(f"eval_fraction: the training data has {len(unique)} image(s); nothing can be held out")
    order = np.random.default_rng(seed).permutation(len(unique))
    count = min(len(unique) - 1, max(1, math.ceil(fraction * len(unique))))
    held = {unique[i] for i in order[:count]}
    train = [i for i, group in enumerate(groups) if group not in held]
    test = [i for i, group in enumerate(groups) if group in held]
    return Subset(dataset, train), Subset(dataset, test)


def batches(dataset: Dataset, size: int) -> Iterator[list[Any]]:
    """Lists of ``size`` items (the last may be shorter), in order."""
    n = len(dataset)  # type: ignore[arg-type]
    for start in range(0, n, size):
        yield [dataset[i] for i in range(start, min(start + size, n))]


@torch.no_grad()
def ris_scores(
    policy: Policy,
    dataset: Dataset,
    embed: Callable[[list[dict[str, Any]]], torch.Tensor],
    mask_key: str = "mask",
    batch_size: int = 8,
) -> dict[str, float]:
    """``{"eval/mIoU", "eval/oIoU"}`` of ``policy`` on items ``{"image", "phrase", mask_key: (H, W) bool}``;
    ``embed(items)`` gives their image embeddings (the objective's cache)."""
    device = next(policy.parameters()).device
    intersections: list[int] = []
    unions: list[int] = []
    for items in batches(dataset, batch_size):
        tokens = {k: v.to(device) for k, v in policy.tokenize([item["phrase"] for item in items]).items()}
        logits, _ = policy(embed(items), tokens["input_ids"], tokens["attention_mask"])
        sizes = [(item["image"].height, item["image"].width) for item in items]
        for item, pred in zip(items, policy.image_masks(logits, sizes), strict=True):
            i, u = intersection_union(pred, item[mask_key])
            intersections.append(i)
            unions.append(u)
    scores = ris_metrics(intersections, unions)
    return {"eval/mIoU": scores.get("mIoU", 0.0), "eval/oIoU": scores.get("oIoU", 0.0)}


def pointing_scores(
    heatmaps: Callable[[list[Any], list[str]], torch.Tensor], dataset: Dataset, batch_size: int = 8
) -> dict[str, float]:
    """``{"eval/pointing"}``: pointing-game accuracy on items ``{"image", "phrase", "box"}`` (xyxy pixels), with
    ``heatmaps(images, phrases)`` giving one (h, w) map per item."""
    hits: list[bool] = []
    for items in batches(dataset, batch_size):
        maps = heatmaps([item["image"] for item in items], [item["phrase"] for item in items])
        hits += [pointing_hit(heat, [item["box"]], item["image"].size) for item, heat in zip(items, maps, strict=True)]
    return {"eval/pointing": pointing_accuracy(hits)}
