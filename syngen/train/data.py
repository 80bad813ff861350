"""Training data: resolving a DATASET argument and reading the ``grounding`` regions and ``preference`` pairs.

DATASET is a syngen output folder (its ``dataset/`` is used), a dataset folder, or a Hub dataset id. Pairs are
read with :func:`syngen.data.load_preference`, so they may embed their image or refer to the ``grounding``
row's image by ``image_id``. Items are plain dicts; masks are decoded from COCO RLE when an item is read.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from syngen.data import load_preference, read_dataset
from syngen.errors import DatasetError
from syngen.masks import decode_rle, rle_problem


def dataset_path(spec: str) -> str:
    """The folder or Hub id to load: ``<spec>/dataset`` for a syngen output folder, else ``spec``."""
    inner = Path(spec) / "dataset"
    return str(inner) if (inner / "README.md").exists() else spec


NAN_BOXES = "boxes with a NaN or infinite coordinate"  # a reason for leaving regions out, as logs and reports say it
# the columns each config must have for training and scoring
COLUMNS = {"grounding": ("id", "image", "regions"), "preference": ("prompt", "chosen", "rejected")}


def load_split(spec: str, config: str, split: str) -> datasets.Dataset:
    """Config ``config`` (``grounding`` or ``preference``) of the dataset ``spec``, split ``split``, as it is on
    disk now for a local folder (:func:`syngen.data.read_dataset`).

    Raises :class:`~syngen.errors.DatasetError` naming the dataset when it, its config, its split or one of the
    config's :data:`COLUMNS` is not there.
    """
    path = dataset_path(spec)
    try:
        rows = load_preference(path, split=split) if config == "preference" else read_dataset(path, config, split)
    except DatasetError as err:
        raise DatasetError(f"{err} (reading its {config!r} config, split {split!r})") from None
    except (FileNotFoundError, ValueError, KeyError) as err:
        raise DatasetError(f"{spec}: cannot read the {config!r} config, split {split!r}: {err}") from None
    missing = [name for name in COLUMNS[config] if name not in rows.column_names]
    if missing:
        raise DatasetError(
            f"{spec}: the {config!r} config has no {', '.join(missing)} column; it has "
            f"{', '.join(rows.column_names)}, where a syngen dataset's has {', '.join(COLUMNS[config])}"
        )
    return rows


def checked_mask(rle: Any, image: Image.Image, where: str) -> np.ndarray:
    """The (H, W) bool mask of a COCO RLE that fits ``image``; raises :class:`~syngen.errors.DatasetError`
    naming ``where`` (the dataset and row) for a mask of another size or garbage counts."""
    problem = rle_problem(rle, image.height, image.width)
    if problem:
        raise DatasetError(f"{where}: {problem}")
    return decode_rle(rle)


class RegionDataset(Dataset):
    """One item per region of the ``grounding`` config: ``{"key", "image", "phrase", "box", "mask"}``.

    ``key`` is the image's id (stable across epochs, for the embedding cache); ``box`` is xyxy pixels; ``mask``
    is (H, W) bool, or None when the region has none. Regions missing a field of ``require`` are left out, and
    so are regions whose required box has a NaN or infinite coordinate: ``skipped`` counts those (reason ->
    count). ``source`` names the dataset in errors: a required mask whose size is not its image's (checked up
    front where the rows have ``width`` and ``height``, else when read), or whose RLE is garbage.
    """

    def __init__(self, rows: datasets.Dataset, require: tuple[str, ...] = ("phrase", "mask"), source: str = ""):
        self.rows = rows.select_columns(["id", "image", "regions"])
        self.source = source
        self.skipped: Counter[str] = Counter()
        meta = rows.select_columns([c for c in ("id", "width", "height", "regions") if c in rows.column_names])[:]
        self.index = []
        for row, found in enumerate(meta["regions"]):
            for i, region in enumerate(found or []):
                if not all(region.get(name) for name in require):
                    continue
                if "box" in require and not all(math.isfinite(float(v)) for v in region["box"]):
                    self.skipped[NAN_BOXES] += 1
                    continue
                if "mask" in require and "height" in meta:
                    problem = rle_problem(region["mask"], meta["height"][row], meta["width"][row], runs=False)
                    if problem:
                        raise DatasetError(f"{self._where(meta['id'][row], i)}: {problem}")
                self.index.append((row, i))

    def _where(self, image_id: str, region: int) -> str:
        return f"{self.source}: grounding row {image_id!r}, region {region}"

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: int) -> dict[str, Any]:
        row, i = self.index[item]
        record = self.rows[row]
        region = record["regions"][i]
        image = record["image"].convert("RGB")
        return {
            "key": record["id"],
            "image": image,
            "phrase": region["phrase"],
            "box": region.get("box"),
            "mask": checked_mask(region["mask"], image, self._where(record["id"], i)) if region.get("mask") else None,
        }


class PairDataset(Dataset):
    """One item per ``preference`` pair: ``{"index", "key", "image", "phrase", "chosen", "rejected"}``; a mask
    whose size is not its image's, or garbage RLE, raises :class:`~syngen.errors.DatasetError` naming ``source``
    and the pair."""

    def __init__(self, pairs: datasets.Dataset, source: str = ""):
        self.pairs = pairs
        self.source = source

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, item: int) -> dict[str, Any]:
        pair = self.pairs[item]
        image = pair["image"].convert("RGB")
        where = f"{self.source}: preference pair {pair.get('id') or item!r}"
        return {
            "index": item,
            "key": pair.get("image_id") or "",
            "image": image,
            "phrase": pair["prompt"],
            "chosen": checked_mask(pair["chosen"], image, f"{where}, chosen"),
            "rejected": checked_mask(pair["rejected"], image, f"{where}, rejected"),
        }
